"""Full exports: every artwork of one user in parts, each a BagIt bag in a ZIP."""
