"""PostgreSQL schema (numbered migrations), SQL functions and asyncpg access."""
