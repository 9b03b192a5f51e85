"""`hsra simulate` (placeholder until implemented)."""
