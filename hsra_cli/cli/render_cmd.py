"""`hsra render` (placeholder until implemented)."""
