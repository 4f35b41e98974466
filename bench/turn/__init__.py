"""bench.turn: Cecilia's own time per assistant turn, webhook in → provider send out (see README.md)."""
