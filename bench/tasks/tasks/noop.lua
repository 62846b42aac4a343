-- bench/tasks.sh: the empty task whose jobs/s it measures.
return { name = "noop", description = "Does nothing", queue = "bench", run = function() end }
