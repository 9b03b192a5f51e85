"""`hsra models` (placeholder until implemented)."""
