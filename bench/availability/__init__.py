"""Availability bench: free slots over 60 days for 30 professionals and 20,000 appointments (see run.py)."""
