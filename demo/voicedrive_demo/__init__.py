"""make demo: the whole stack on loopback and the fire drill."""
