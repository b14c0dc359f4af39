"""Information sharing: the situation board, CAP warnings."""
