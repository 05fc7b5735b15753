"""Small TF-free helpers shared by every part of kdefect (including ``edge``)."""
