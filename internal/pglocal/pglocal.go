// Package pglocal starts and stops a throwaway PostgreSQL cluster on this machine, for tests and
// the demo. It finds initdb and pg_ctl on PATH or under /usr/lib/postgresql/*/bin, and, when run as
// root (which PostgreSQL refuses), runs them as the "postgres" user through runuser.
//
// The cluster is tuned for speed, not durability (fsync, synchronous_commit and full_page_writes
// off): a crash may lose it, which is fine for data that is thrown away. It does not import
// "testing", so the demo binary can use it too.
package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options configures Start.
type Options struct {
	// Dir is the data directory. "" creates a temporary one that Stop removes. A Dir that already
	// holds a cluster (PG_VERSION exists) is reused, and kept by Stop.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Log receives initdb's output and, at Stop, the server log. nil discards them (the log is
	// still put into Start's error when the server does not come up).
	Log io.Writer
	// Durable keeps PostgreSQL's production defaults (fsync, synchronous_commit and
	// full_page_writes on) instead of turning them off for speed: benchmarks use it so WAL volume
	// and commit costs are what a real server has.
	Durable bool
}

// Cluster is a running PostgreSQL server. Superuser "postgres", trust authentication.
type Cluster struct {
	base    string // temp dir holding data/ and server.log; "" for a caller's Dir
	temp    bool   // base was created by Start and is removed by Stop
	dataDir string
	sockDir string
	sockTmp bool // sockDir is a separate temp dir (data dir path too long for a socket)
	logFile string
	port    int
	bin     string
	runAs   *user.User // nil: run binaries as ourselves
	log     io.Writer
	durable bool

	watchdog     *exec.Cmd      // stops the server if this process dies without Stop
	watchdogPipe io.WriteCloser // its stdin; EOF (our exit or Stop) is its signal
}

// maxSocketPath is the longest unix socket path Linux accepts (sizeof(sun_path) - 1).
const maxSocketPath = 107

// startTimeout bounds pg_ctl's wait for the server to accept connections; initdb plus first
// start takes about a second on a slow CI machine, so a minute only trips on a real hang.
const startTimeout = 60 * time.Second

// Start creates (unless reused) and starts a cluster. On failure everything it created is
// removed and the error carries the tail of the server log.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, log: o.Log, durable: o.Durable}
	if c.log == nil {
		c.log = io.Discard
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, PostgreSQL needs an unprivileged user: %w", err)
		}
		c.runAs = u
	}

	if o.Dir == "" {
		c.base, err = os.MkdirTemp(tempRoot(), "pglocal-")
		if err != nil {
			return nil, fmt.Errorf("create cluster dir: %w", err)
		}
		c.temp = true
		c.dataDir = filepath.Join(c.base, "data")
	} else {
		c.dataDir, err = filepath.Abs(o.Dir)
		if err != nil {
			return nil, fmt.Errorf("cluster dir: %w", err)
		}
	}
	defer func() {
		if err != nil {
			c.cleanup()
		}
	}()
	c.logFile = filepath.Join(c.dataDir, "server.log")
	if c.temp {
		// The log lives beside, not inside, the data dir only for temp clusters, where initdb
		// requires an empty data dir.
		c.logFile = filepath.Join(c.base, "server.log")
	}

	c.sockDir = c.dataDir
	if len(c.sockDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		if c.sockDir, err = os.MkdirTemp("", "pgsock-"); err != nil {
			return nil, fmt.Errorf("create socket dir: %w", err)
		}
		c.sockTmp = true
		if err := c.chown(c.sockDir); err != nil {
			return nil, err
		}
	}

	if _, statErr := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); statErr != nil {
		if err := c.initdb(ctx); err != nil {
			return nil, err
		}
	}

	// A free port found by listening and closing can be taken by someone else before the server
	// binds it, so retry a few times when the port was chosen for the caller.
	for attempt := 0; ; attempt++ {
		c.port = o.Port
		if c.port == 0 {
			if c.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = c.start(ctx)
		if err == nil {
			if err = c.startWatchdog(); err != nil {
				c.stopServer("immediate")
				return nil, err
			}
			return c, nil
		}
		if o.Port != 0 || attempt == 2 || !errors.Is(err, errPortInUse) {
			return nil, err
		}
	}
}

var errPortInUse = errors.New("port in use")

const minShmFree = 1 << 30

// tempRoot is where temporary clusters go: /dev/shm (memory) when it exists, because creating a
// database from a template writes the whole template, which is 10-20x faster in memory than on
// this VM's disk, and fsync=off already gave up durability. Else os.TempDir().
// Containers often mount a 64 MiB /dev/shm, too small for a cluster and its test databases, so
// it needs minShmFree bytes free.
func tempRoot() string {
	var fs syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &fs); err != nil || fs.Bavail*uint64(fs.Bsize) < minShmFree {
		return os.TempDir()
	}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", "pglocal-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

// findBinDir returns the directory holding initdb and pg_ctl: PATH first, else the newest
// /usr/lib/postgresql/<major>/bin (Debian/Ubuntu keep server binaries off PATH).
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool { return majorOf(matches[i]) > majorOf(matches[j]) })
	for _, m := range matches {
		dir := filepath.Dir(m)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install postgresql-15")
}

// majorOf extracts <major> from /usr/lib/postgresql/<major>/bin/initdb; unparsable sorts last.
func majorOf(path string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(path))), 64)
	if err != nil {
		return -1
	}
	return v
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if c.temp {
		if err := c.chown(c.base); err != nil {
			return err
		}
	}
	if err := c.chown(c.dataDir); err != nil {
		return err
	}
	var out bytes.Buffer
	// --no-sync and --no-locale: speed and deterministic collation; trust auth: nobody but this
	// machine's processes can reach 127.0.0.1 and the socket dir is private to postgres.
	cmd := c.command(ctx, "initdb", "-D", c.dataDir, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync")
	cmd.Stdout = io.MultiWriter(&out, c.log)
	cmd.Stderr = cmd.Stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", c.dataDir, err, tail(out.Bytes()))
	}
	// Our settings live in their own file, rewritten on every start (the port may change for a
	// reused dir); postgresql.conf only includes it, so no shell quoting of paths is involved.
	f, err := os.OpenFile(filepath.Join(c.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	_, err = io.WriteString(f, "\ninclude_if_exists = 'pglocal.conf'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	return nil
}

func (c *Cluster) start(ctx context.Context) error {
	settings := []string{
		"listen_addresses = '127.0.0.1'",
		"port = " + strconv.Itoa(c.port),
		"unix_socket_directories = " + quoteConf(c.sockDir),
		// Parallel test packages each open a pool per test database.
		"max_connections = 200",
		"logging_collector = off",
	}
	if !c.durable {
		// Durability off: the data is disposable and these make tests several times faster.
		settings = append(settings, "fsync = off", "synchronous_commit = off", "full_page_writes = off")
	}
	conf := strings.Join(append(settings, ""), "\n")
	confPath := filepath.Join(c.dataDir, "pglocal.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("configure cluster: %w", err)
	}
	if err := c.chown(confPath); err != nil {
		return err
	}
	// Truncate the log so an error shows this attempt's lines only.
	if err := os.WriteFile(c.logFile, nil, 0o600); err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	if err := c.chown(c.logFile); err != nil {
		return err
	}
	var out bytes.Buffer
	cmd := c.command(ctx, "pg_ctl", "-D", c.dataDir, "-l", c.logFile, "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)), "start")
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		logTail := c.readLogTail()
		// pg_ctl may have left a half-started server behind (e.g. on timeout).
		c.stopServer("immediate")
		err = fmt.Errorf("start PostgreSQL on 127.0.0.1:%d: %w\n%s\nserver log:\n%s",
			c.port, err, bytes.TrimSpace(out.Bytes()), logTail)
		if bytes.Contains([]byte(logTail), []byte("Address already in use")) {
			err = fmt.Errorf("%w: %w", errPortInUse, err)
		}
		return err
	}
	return nil
}

// watchdogScript waits for EOF on stdin, i.e. for the process that started the cluster to close
// the pipe or die (the kernel closes it then, even on SIGKILL or a test timeout), and then runs
// its arguments (pg_ctl stop) and removes $PGLOCAL_RM. Without it a crashed test run would leave
// a postmaster running, and its data in memory (/dev/shm), until reboot.
const watchdogScript = `read -r _; "$@" >/dev/null 2>&1; if [ -n "$PGLOCAL_RM" ]; then rm -rf "$PGLOCAL_RM"; fi; exit 0`

func (c *Cluster) startWatchdog() error {
	stop := c.command(context.Background(), "pg_ctl", "-D", c.dataDir, "-m", "immediate", "-w", "stop")
	cmd := exec.Command("/bin/sh", append([]string{"-c", watchdogScript, "pglocal-watchdog"}, stop.Args...)...)
	cmd.Dir = "/"
	cmd.Env = stop.Env
	var rm []string
	if c.temp {
		rm = append(rm, c.base)
	}
	if c.sockTmp {
		rm = append(rm, c.sockDir)
	}
	if len(rm) > 0 {
		// Paths from MkdirTemp contain no spaces; the script splits on them.
		cmd.Env = append(cmd.Env, "PGLOCAL_RM="+strings.Join(rm, " "))
	}
	// Its own process group: a Ctrl-C to the test's group must not kill the watchdog before it
	// has stopped the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("start cluster watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start cluster watchdog: %w", err)
	}
	c.watchdog, c.watchdogPipe = cmd, pipe
	return nil
}

// quoteConf quotes a postgresql.conf string value.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// command builds an exec.Cmd for one of the cluster's binaries, through runuser as root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := filepath.Join(c.bin, name)
	var cmd *exec.Cmd
	if c.runAs != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runAs.Username, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	// The caller's cwd may not be readable by the postgres user; "/" always is.
	cmd.Dir = "/"
	// Keep the server's messages in English and its locale out of our environment's.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	return cmd
}

// chown hands path to the postgres user when running as root.
func (c *Cluster) chown(path string) error {
	if c.runAs == nil {
		return nil
	}
	uid, _ := strconv.Atoi(c.runAs.Uid)
	gid, _ := strconv.Atoi(c.runAs.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("hand %s to user postgres: %w", path, err)
	}
	return nil
}

func (c *Cluster) readLogTail() string {
	b, err := os.ReadFile(c.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tail(b)
}

// tail keeps the last few KiB of a log: enough for the FATAL line and its context.
func tail(b []byte) string {
	const keep = 4096
	if len(b) > keep {
		b = b[len(b)-keep:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}

// Port is the TCP port the server listens on at 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// DataDir is the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// DSN returns a URL connecting to database db as the superuser over TCP.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// Stop stops the server, copies its log to Options.Log and removes the directory if Start
// created it. A temp cluster is stopped in immediate mode (its data is discarded anyway); a kept
// one is shut down cleanly.
func (c *Cluster) Stop() error {
	mode := "fast"
	if c.temp {
		mode = "immediate"
	}
	err := c.stopServer(mode)
	if b, rerr := os.ReadFile(c.logFile); rerr == nil {
		_, _ = c.log.Write(b)
	}
	if cerr := c.cleanup(); err == nil {
		err = cerr
	}
	if c.watchdog != nil {
		// The server is already stopped and the dir gone, so what the watchdog then does is a
		// no-op; waiting reaps it.
		c.watchdogPipe.Close()
		_ = c.watchdog.Wait()
		c.watchdog = nil
	}
	return err
}

func (c *Cluster) stopServer(mode string) error {
	if _, err := os.Stat(filepath.Join(c.dataDir, "postmaster.pid")); err != nil {
		return nil // not running
	}
	// Stop must work after the caller's context is gone, so it has its own bound.
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	out, err := c.command(ctx, "pg_ctl", "-D", c.dataDir, "-m", mode, "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("stop PostgreSQL in %s: %w\n%s", c.dataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

func (c *Cluster) cleanup() error {
	var err error
	if c.sockTmp {
		err = os.RemoveAll(c.sockDir)
	}
	if c.temp {
		if rerr := os.RemoveAll(c.base); rerr != nil {
			err = fmt.Errorf("remove cluster dir: %w", rerr)
		}
	}
	return err
}
