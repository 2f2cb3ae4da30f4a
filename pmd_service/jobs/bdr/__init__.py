"""Building a BDR: the arq job, one claimed run, its SQL."""
