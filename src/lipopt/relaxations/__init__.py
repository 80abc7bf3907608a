"""Relaxations of max P over the box: the Krivine/Handelman LP hierarchy (LiPopt-k)."""
