CREATE TABLE {prefix}plugin_things (id serial PRIMARY KEY, name text NOT NULL);
