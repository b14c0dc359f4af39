"""Resources in incidents: requests for reserves, their approval (drawing the reserve down), dispatch, receipt and
return, replenishment under safety stock, and their EDXL-RM 1.0 messages."""
