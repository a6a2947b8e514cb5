package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Scenarios 1-4: the daemon's own plugins and the Flyte SDK adapter through the plugin;
// those a backend generation does not change run through both (flyte2 and flyte1
// subtests), the rest of Flyte 1's in flyte1_test.go.

func TestShellTaskSucceedsWithOutputs(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		task := shellTask(t, `printf 'hello %s x%s' "$FLYTE_INPUT_WHO" "$FLYTE_INPUT_TIMES" > "$FLYTE_OUTPUT_DIR/greeting.txt"`,
			map[string]any{"who": "world", "times": 3}, vars("who", "STRING", "times", "INTEGER"),
			vars("exit_code", "INTEGER", "greeting", `{"blob": {"dimensionality": "SINGLE"}}`),
			map[string]string{"greeting": "greeting.txt"})
		_, out := p.Run(context.Background(), task, poll, within)
		expect(t, out, Success, "")
		if code := scalar(t, out.Outputs, "exit_code"); code != "0" {
			t.Fatalf("exit_code output %v, want 0", code)
		}
		if text := readURI(t, scalar(t, out.Outputs, "greeting")); text != "hello world x3" {
			t.Fatalf("greeting output %q", text)
		}
	})
}

func TestShellTaskFailingIsAPermanentFailureWithOurMessage(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		task := shellTask(t, `echo "disk full: /data" >&2; exit 3`, nil, "", vars("exit_code", "INTEGER"), nil)
		_, out := p.Run(context.Background(), task, poll, within)
		expect(t, out, PermanentFailure, TaskFailedWithError,
			"failed to run the job: exit code 3", "disk full: /data")
		if out.Outputs != nil {
			t.Fatalf("a failed task wrote outputs: %v", out.Outputs)
		}
	})
}

func TestSQLiteTaskSucceedsWithOutputs(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		task := Task{
			Template: template("sql", vars("limit", "INTEGER", "label", "STRING"),
				vars("row_count", "INTEGER", "result", `{"structured_dataset_type": {"format": "csv"}}`),
				map[string]any{"database": ":memory:", "format": "csv", "query": "WITH RECURSIVE n(i) AS " +
					"(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :limit) " +
					"SELECT i, i * i AS square, :label AS label FROM n"}),
			Inputs:       literals(map[string]any{"limit": 4, "label": "sq"}),
			OutputPrefix: t.TempDir(), Name: "sqlite",
		}
		_, out := p.Run(context.Background(), task, poll, within)
		expect(t, out, Success, "")
		if rows := scalar(t, out.Outputs, "row_count"); rows != "4" {
			t.Fatalf("row_count output %v, want 4", rows)
		}
		csv := readURI(t, scalar(t, out.Outputs, "result"))
		if !strings.Contains(csv, "4,16,sq") {
			t.Fatalf("result dataset lacks the row 4,16,sq:\n%s", csv)
		}
	})
}

// counterTask is the Flyte SDK connector of tests/fixtures/connectors/flyte_style.py,
// its api_key a secret the backend resolves from its secret manager.
func counterTask(t *testing.T, n int, label string) Task {
	return Task{
		Template: template("flyte_counter", vars("n", "INTEGER", "label", "STRING"),
			vars("total", "INTEGER", "label", "STRING", "ratio", "FLOAT", "ok", "BOOLEAN"),
			map[string]any{"secrets": map[string]string{"api_key": "counter-api-key"},
				"configs": map[string]string{"region": "eu"}}),
		Inputs:       literals(map[string]any{"n": n, "label": label}),
		OutputPrefix: t.TempDir(), Name: "counter-" + label,
	}
}

// countThrough runs the counter through the plugin, labelled prefix and a number of this
// run's own (the connector counts polls per job in its process): queued, running with the
// region config in its custom info and a log link, then its outputs; and a negative
// count fails for good. It returns the label.
func countThrough(t *testing.T, p *Plugin, prefix string) string {
	t.Helper()
	ctx := context.Background()
	label := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1_000_000_000)
	item, out := p.Launch(ctx, counterTask(t, 3, label))
	expect(t, out, Queued, "")
	// The connector answers UNDEFINED first, which the backend would take for a system
	// error; the adapter reports it as QUEUED with the connector's message.
	expect(t, p.Check(ctx, item), Queued, "", "not scheduled yet")
	out = p.Check(ctx, item)
	expect(t, out, Running, "")
	if info := out.Resource["custom_info"].(map[string]any); info["job"] != "job-3-"+label+"-eu" {
		t.Fatalf("custom_info %v: the region config did not reach the connector", info)
	}
	expectLink(t, out, "Counter", "https://counter.example/job-3-"+label+"-eu")
	out = p.Follow(ctx, item, poll, within)
	expect(t, out, Success, "")
	want := map[string]any{"total": "6", "label": strings.ToUpper(label), "ratio": 0.75, "ok": true}
	for name, value := range want {
		if got := scalar(t, out.Outputs, name); got != value {
			t.Fatalf("output %s = %#v, want %#v", name, got, value)
		}
	}
	_, out = p.Run(ctx, counterTask(t, -1, label+"neg"), poll, within)
	expect(t, out, PermanentFailure, TaskFailedWithError, "failed to run the job: cannot count below zero")
	return label
}

func TestFlyteSDKConnectorThroughTheAdapter(t *testing.T) {
	p := plugin(t, schema, DefaultDeployment(shared(t).Address))
	p.Secrets["counter-api-key"] = "s3cr3t-counter-key"
	label := countThrough(t, p, "adapter")

	// The backend's secrets: one it lacks fails the create, a wrong one the connector's.
	delete(p.Secrets, "counter-api-key")
	_, out := p.Run(context.Background(), counterTask(t, 1, label+"nosecret"), poll, within)
	expect(t, out, RetryableFailure, TaskFailedWithError, "Failed to get secret value")
	p.Secrets["counter-api-key"] = "wrong"
	_, out = p.Run(context.Background(), counterTask(t, 1, label+"wrongkey"), poll, within)
	expect(t, out, RetryableFailure, TaskFailedWithError, "failed to create task from connector with rpc error")
	if strings.Contains(out.Message, "s3cr3t") {
		t.Fatalf("the CreateTask error shows a secret: %s", out.Message)
	}
}

// alive says whether pid is a live process (not gone, not a zombie).
func alive(pid string) bool {
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(pid) + "/status")
	return err == nil && !strings.Contains(string(status), "zombie")
}

func TestAbortDeletesTheRunningJob(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		task := shellTask(t, `sleep 120 & echo $! > "$FLYTE_OUTPUT_DIR/child"; echo $$ > "$FLYTE_OUTPUT_DIR/shell"; wait`,
			nil, "", vars("exit_code", "INTEGER"), nil)
		ctx := context.Background()
		item, out := p.Launch(ctx, task)
		expect(t, out, Queued, "")
		var pids []string
		deadline := time.Now().Add(30 * time.Second)
		for len(pids) < 2 && time.Now().Before(deadline) {
			out = p.Check(ctx, item)
			pids = pids[:0]
			for _, name := range []string{"child", "shell"} {
				files, _ := filepath.Glob(filepath.Join(task.OutputPrefix, "shell-*", "outputs", name))
				if len(files) == 1 {
					if raw, err := os.ReadFile(files[0]); err == nil && strings.HasSuffix(string(raw), "\n") {
						pids = append(pids, string(raw))
					}
				}
			}
			time.Sleep(poll)
		}
		t.Cleanup(func() { // the job outlives a test that failed before its abort
			for _, pid := range pids {
				if n, err := strconv.Atoi(strings.TrimSpace(pid)); err == nil && alive(pid) {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		})
		expect(t, out, Running, "")
		if len(pids) != 2 || !alive(pids[0]) || !alive(pids[1]) {
			t.Fatalf("the job's processes did not start: %q", pids)
		}
		if err := p.Abort(ctx, item); err != nil {
			t.Fatalf("abort: %v", err)
		}
		for deadline := time.Now().Add(10 * time.Second); alive(pids[0]) || alive(pids[1]); {
			if time.Now().After(deadline) {
				t.Fatalf("processes %q still run 10 s after DeleteTask", pids)
			}
			time.Sleep(poll)
		}
		// The backend stops polling after an abort; a poll now would see the job as aborted.
		expect(t, p.Check(ctx, item), PermanentFailure, TaskFailedWithError, "aborted phase")
		if err := p.Abort(ctx, item); err != nil {
			t.Fatalf("a second abort (the backend retries one) failed: %v", err)
		}
	})
}
