"""Batch download requests (BDRs): ZIPs of up to 128 artworks, built by the worker."""
