"""The built-in weight importers, one original implementation per module (registered through the same hook as a
plugin's: ``arblocks_register_importers``)."""
