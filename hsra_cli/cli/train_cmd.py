"""`hsra train` (placeholder until implemented)."""
