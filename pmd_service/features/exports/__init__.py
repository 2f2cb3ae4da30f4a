"""Full exports: every artwork of one user in parts, each part a BagIt bag in a ZIP; incremental
and recurring ones too."""
