package backend

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Daemon is one `flyte-connector serve` subprocess on a loopback port.
type Daemon struct {
	Address string
	Ready   time.Time // when the ready line was read
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     []string
	ready   chan string
	done    chan struct{}
}

var readyLine = regexp.MustCompile(`(?:listening|supervising \d+ worker processes) on (\S+)`)

// FreePort is a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

// StartDaemon runs `bin serve --host 127.0.0.1 --port port args...` with env added to the
// environment (FLYTE_CONNECTOR_* of the caller removed) and waits for its ready line.
func StartDaemon(bin string, port int, env []string, args ...string) (*Daemon, error) {
	argv := append([]string{"serve", "--host", "127.0.0.1", "--port", fmt.Sprint(port),
		"--metrics-port", "0", "--grace-period", "5"}, args...)
	cmd := exec.Command(bin, argv...)
	cmd.Env = append(cleanEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &Daemon{cmd: cmd, ready: make(chan string, 1), done: make(chan struct{})}
	go d.read(bufio.NewScanner(stderr))
	select {
	case d.Address = <-d.ready:
		d.Ready = time.Now()
		return d, nil
	case <-d.done:
		d.Stop()
		return nil, fmt.Errorf("flyte-connector serve exited before it was ready:\n%s", d.Log())
	case <-time.After(60 * time.Second):
		d.Stop()
		return nil, fmt.Errorf("flyte-connector serve not ready in 60 s:\n%s", d.Log())
	}
}

func (d *Daemon) read(lines *bufio.Scanner) {
	defer close(d.done)
	lines.Buffer(make([]byte, 1<<16), 1<<20)
	for lines.Scan() {
		line := lines.Text()
		d.mu.Lock()
		d.log = append(d.log, line)
		d.mu.Unlock()
		if match := readyLine.FindStringSubmatch(line); match != nil {
			select {
			case d.ready <- match[1]:
			default:
			}
		}
	}
}

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Log is what the daemon wrote to stderr so far.
func (d *Daemon) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, "\n")
}

// Stop sends SIGTERM to the daemon's pid, waits (SIGKILL after 30 s) and returns its exit
// code; calling it again is harmless.
func (d *Daemon) Stop() int {
	if d.cmd.ProcessState != nil {
		return d.cmd.ProcessState.ExitCode()
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.AfterFunc(30*time.Second, func() { _ = d.cmd.Process.Kill() })
	defer timer.Stop()
	<-d.done
	_ = d.cmd.Wait()
	return d.cmd.ProcessState.ExitCode()
}

// Workers are the pids of the daemon's live child processes (its `--processes` workers).
func (d *Daemon) Workers() map[int]bool {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", d.Pid(), d.Pid()))
	out := map[int]bool{}
	for _, field := range strings.Fields(string(raw)) {
		var pid int
		if _, err := fmt.Sscan(field, &pid); err == nil {
			out[pid] = true
		}
	}
	return out
}

// offline keeps cloud client libraries a daemon may import from probing for a metadata
// server off this machine (as tests/helpers/offline.py does for the pytest suite).
var offline = []string{"NO_GCE_CHECK=true", "GCE_METADATA_HOST=127.0.0.1:9",
	"GCE_METADATA_IP=127.0.0.1:9", "AWS_EC2_METADATA_DISABLED=true"}

func cleanEnv() []string {
	out := append([]string{}, offline...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLYTE_CONNECTOR_") {
			out = append(out, kv)
		}
	}
	return out
}
