package backend

import (
	"context"
	"testing"
	"time"
)

// Scenario 7: a GetTask answer larger than grpc-go's 4 MiB receive limit.

func bulkyTask(t *testing.T, size int, runningFirst, toFile bool) Task {
	return Task{
		Template: template("bulky", "", vars("text", "STRING"),
			map[string]any{"size": size, "running_first": runningFirst, "to_file": toFile}),
		OutputPrefix: t.TempDir(), Name: "bulky",
	}
}

// Today the daemon answers inline whatever the size, so the plugin's GetTask fails with
// RESOURCE_EXHAUSTED on every poll. When `serve --max-response-bytes` spills outputs to
// <output_prefix>/outputs.pb, flip this test: the backend should then conclude Success
// with the outputs read from the file.
func TestOutputsOver4MiB_TodayGetTaskExhaustsTheErrorBudget(t *testing.T) {
	p := plugin(t, DefaultDeployment(shared(t).Address))
	ctx := context.Background()

	// Just under the limit: read inline.
	_, out := p.Run(ctx, bulkyTask(t, 4<<20-4096, false, false), poll, within)
	expect(t, out, Success, "")
	if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != 4<<20-4096 {
		t.Fatalf("output of %d bytes, want %d", len(text), 4<<20-4096)
	}

	// Over it, first answer: the task fails once the budget of 5 errors is spent.
	item, out := p.Run(ctx, bulkyTask(t, 5<<20, false, false), poll, within)
	expect(t, out, PermanentFailure, CacheFailed, "failed to get task from connector with rpc error: "+
		"code = ResourceExhausted", "received message larger than max")
	if item.SyncFailures != p.MaxSystemFailures+1 {
		t.Fatalf("%d GetTask errors before failing, want %d", item.SyncFailures, p.MaxSystemFailures+1)
	}

	// Over it after a RUNNING answer: the cache keeps the last resource it read, so the
	// backend goes on reporting Running although every GetTask fails: the task hangs.
	item, out = p.Run(ctx, bulkyTask(t, 5<<20, true, false), poll, 3*time.Second)
	expect(t, out, Running, "")
	if item.SyncFailures <= p.MaxSystemFailures {
		t.Fatalf("only %d GetTask errors in 3 s", item.SyncFailures)
	}
}

// The way out the backend offers: SUCCEEDED without inline outputs, which it then reads
// from <output_prefix>/outputs.pb, whatever their size.
func TestOutputsOver4MiBFromOutputsPbSucceed(t *testing.T) {
	p := plugin(t, DefaultDeployment(shared(t).Address))
	item, out := p.Run(context.Background(), bulkyTask(t, 5<<20, false, true), poll, within)
	expect(t, out, Success, "")
	if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != 5<<20 {
		t.Fatalf("output of %d bytes, want %d", len(text), 5<<20)
	}
	if item.SyncFailures != 0 {
		t.Fatalf("%d GetTask errors", item.SyncFailures)
	}
}
