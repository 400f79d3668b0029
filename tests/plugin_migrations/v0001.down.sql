DROP TABLE {prefix}plugin_things;
