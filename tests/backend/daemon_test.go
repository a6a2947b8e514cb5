package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenarios 5, 6 and 8: the daemon restarted, several worker processes, TLS; each
// through both backend generations.

func TestDaemonRestartBetweenCreateAndGet(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		port, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		state := t.TempDir()
		args := []string{"--plugins", "flyte-connector-shell"}
		first := startDaemon(t, port, state, args...)
		p := plugin(t, s, DefaultDeployment(first.Address))
		ctx := context.Background()
		script := `sleep 2; echo done > "$FLYTE_OUTPUT_DIR/result.txt"`
		outputs := vars("exit_code", "INTEGER", "result", `{"blob": {"dimensionality": "SINGLE"}}`)
		files := map[string]string{"result": "result.txt"}
		kept, out := p.Launch(ctx, shellTask(t, script, nil, "", outputs, files))
		expect(t, out, Queued, "")
		foreign, _ := p.Launch(ctx, shellTask(t, script, nil, "", outputs, files))
		expect(t, p.Check(ctx, kept), Running, "")
		if code := first.Stop(); code != 0 {
			t.Fatalf("the first daemon exited %d", code)
		}

		// Another state dir means another meta key: the daemon refuses the meta on every
		// poll and the backend gives the task up when its error budget is spent.
		stranger := startDaemon(t, port, t.TempDir(), args...)
		reconnect(t, p)
		out = p.Follow(ctx, foreign, poll, within)
		expect(t, out, PermanentFailure, CacheFailed, "failed to get task from connector with rpc error: code = InvalidArgument")
		stranger.Stop()

		// The same state dir: the job started before the restart finishes and its outputs arrive.
		startDaemon(t, port, state, args...)
		reconnect(t, p)
		out = p.Follow(ctx, kept, 500*time.Millisecond, within)
		expect(t, out, Success, "")
		if text := readURI(t, scalar(t, out.Outputs, "result")); text != "done\n" {
			t.Fatalf("result output %q", text)
		}
		if kept.SyncFailures != 0 {
			t.Fatalf("%d GetTask errors after the restart", kept.SyncFailures)
		}
	})
}

// reconnect waits until the plugin's connection reaches the daemon again, as the
// backend's connector watcher (every 10 s) and its 30 s polls give it time to.
func reconnect(t *testing.T, p *Plugin) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for err := p.WatchConnectors(context.Background()); err != nil; err = p.WatchConnectors(context.Background()) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon is not reachable again: %v", err)
		}
		time.Sleep(poll)
	}
}

func TestTwoWorkerProcessesRoundRobinAllSucceedBothServe(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		d := startDaemon(t, 0, t.TempDir(), "--plugins", "none", "-m", "process_connectors",
			"--processes", "2")
		workers := d.Workers()
		if len(workers) != 2 {
			t.Fatalf("workers %v, want 2", workers)
		}
		// One backend keeps one connection per endpoint and round_robin has one address to
		// use: every task of one backend replica is served by the same worker.
		single := plugin(t, s, DefaultDeployment(d.Address))
		alone := map[string]bool{}
		for i := 0; i < 8; i++ {
			task := Task{Template: template("pid", "", "", map[string]any{}), OutputPrefix: t.TempDir(),
				Name: fmt.Sprintf("alone-%d", i)}
			_, out := single.Run(context.Background(), task, poll, within)
			expect(t, out, Success, "")
			alone[str(out.Resource["message"])] = true
		}
		if len(alone) != 1 {
			t.Fatalf("one backend replica was served by workers %v: more than its one connection?", alone)
		}
		// For a few hundred ms after the ready line, new connections all went to one worker
		// in 5 of 8 starts here (16 of 16, counted with ss); later ones spread. A backend
		// connects long after a rollout, so wait until new connections reach both workers
		// (at most 0.3 s in 10 runs) and say how long that took.
		for seen := map[string]bool{}; len(seen) < 2; {
			if time.Since(d.Ready) > 30*time.Second {
				t.Fatalf("30 s of new connections all served by workers %v", seen)
			}
			seen[pidServing(t, s, d.Address)] = true
		}
		t.Logf("new connections reached both workers %.1f s after the ready line",
			time.Since(d.Ready).Seconds())
		// So the suite runs 16 backend replicas of 2 tasks each: 16 connections for the
		// kernel to spread over the workers (all on one: a chance of 1 in 32768).
		const replicas, tasks = 16, 2
		var mu sync.Mutex
		served := map[int]int{}
		var wg sync.WaitGroup
		errs := make(chan string, replicas*tasks)
		for r := 0; r < replicas; r++ {
			p := plugin(t, s, DefaultDeployment(d.Address))
			for i := 0; i < tasks; i++ {
				wg.Add(1)
				go func(name string) {
					defer wg.Done()
					task := Task{Template: template("pid", "", "", map[string]any{}),
						OutputPrefix: t.TempDir(), Name: name}
					_, out := p.Run(context.Background(), task, poll, within)
					if out.Err != nil || out.Phase != Success {
						errs <- fmt.Sprintf("%s: %s", name, out)
						return
					}
					var pid int
					fmt.Sscan(str(out.Resource["message"]), &pid)
					mu.Lock()
					served[pid]++
					mu.Unlock()
				}(fmt.Sprintf("pid-%d-%d", r, i))
			}
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		total := 0
		for pid, n := range served {
			if !workers[pid] {
				t.Errorf("pid %d answered but is not a worker of %v", pid, workers)
			}
			total += n
		}
		t.Logf("tasks finished per worker pid: %v", served)
		if total != replicas*tasks || len(served) != 2 {
			t.Fatalf("%d tasks succeeded over %d workers, want %d over 2", total, len(served), replicas*tasks)
		}
	})
}

// pidServing runs one pid task over a new connection: the pid of the worker that served it.
func pidServing(t *testing.T, s *Schema, address string) string {
	client, err := Dial(s, DefaultDeployment(address))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p := NewPlugin(client)
	p.categories = map[string]bool{categoryKey("pid", 0): false} // listed, async
	task := Task{Template: template("pid", "", "", map[string]any{}), OutputPrefix: t.TempDir(), Name: "probe"}
	_, out := p.Run(context.Background(), task, poll, within)
	if out.Phase != Success {
		t.Fatalf("probe task: %s", out)
	}
	return str(out.Resource["message"])
}

func TestTLSWithATestCA(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		d := startDaemon(t, 0, t.TempDir(), "--plugins", "flyte-connector-shell",
			"--tls-cert", tlsFiles.cert, "--tls-key", tlsFiles.key)
		dep := DefaultDeployment(d.Address)
		dep.Insecure = false // verified against the system pool, which SSL_CERT_FILE makes our CA
		p := plugin(t, s, dep)
		task := shellTask(t, `echo "over tls" > "$FLYTE_OUTPUT_DIR/said.txt"`, nil, "",
			vars("said", `{"blob": {"dimensionality": "SINGLE"}}`), map[string]string{"said": "said.txt"})
		_, out := p.Run(context.Background(), task, poll, within)
		expect(t, out, Success, "")
		if text := readURI(t, scalar(t, out.Outputs, "said")); text != "over tls\n" {
			t.Fatalf("said output %q", text)
		}

		// A backend configured for plaintext cannot talk to it: CreateTask fails, retryably.
		client, err := Dial(s, DefaultDeployment(d.Address))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		plain := NewPlugin(client)
		plain.categories = p.categories
		_, out = plain.Launch(context.Background(), task)
		expect(t, out, RetryableFailure, TaskFailedWithError, "failed to create task from connector with rpc error: code = Unavailable")
		if strings.Contains(out.Message, "over tls") {
			t.Fatalf("unexpected message %q", out.Message)
		}
	})
}
