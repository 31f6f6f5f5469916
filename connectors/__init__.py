"""The connector a national health data hub runs next to its own OMOP CDM database."""
