"""Building an export's parts: the arq job, one claimed run, its SQL, the plan of parts, a part's BagIt files."""
