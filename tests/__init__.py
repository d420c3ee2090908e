"""asyncdl tests; a package so test modules can share helpers by import."""
