"""One module per command group of ``som``; ``som.cli`` assembles them."""
