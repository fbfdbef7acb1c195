-- The schema and a little reference data for examples/shared.yaml. On a shared service
-- it is applied once, into a template database named by a hash of this file, and each
-- run's database is cloned from it; change a line and the next run builds a new one.
-- On a shared service it runs as a plain role, not as avnadmin: no roles, no
-- untrusted extensions, no server settings here.
CREATE TABLE customers (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  email text NOT NULL UNIQUE
);

CREATE TABLE orders (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  customer_id bigint NOT NULL REFERENCES customers (id),
  total_cents integer NOT NULL CHECK (total_cents >= 0),
  created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO customers (email) VALUES ('ada@example.com'), ('grace@example.com');
