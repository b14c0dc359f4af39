"""Information sharing: field scope, the situation board, CAP warnings."""
