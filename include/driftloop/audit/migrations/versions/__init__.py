"""The revisions, oldest first: 0001 tables (adopting create_all databases), 0002 row_mac,
0003 append-only triggers."""
