"""Batch download requests (BDRs): ZIPs of up to 128 artworks, asked for on the page, built
by the worker and announced live and by email."""
