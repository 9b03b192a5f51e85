"""`hsra reconstruct` (placeholder until implemented)."""
