package pglocal

// WatchdogPID exposes the watchdog's pid to the tests.
func WatchdogPID(c *Cluster) int { return c.watchdog.Process.Pid }
