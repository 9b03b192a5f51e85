"""`hsra evaluate` (placeholder until implemented)."""
