"""Fixed job scripts copied verbatim into job folders. They import only the standard library, numpy and PySCF."""
