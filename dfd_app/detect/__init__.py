"""``dfd detect``'s pipeline: videos / images -> frames -> faces -> scores -> result rows."""
