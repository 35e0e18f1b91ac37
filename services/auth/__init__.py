"""Auth service: verifies Supabase JWTs, owns organizations and memberships, issues scope tokens."""
