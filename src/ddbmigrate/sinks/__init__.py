"""Where records go: tables (batch writer, conditional puts, deletes), files."""
