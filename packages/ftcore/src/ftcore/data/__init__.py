"""Datasets: reading sources, turning rows into training examples, caching, packing."""
