package backend

import (
	"context"
	"testing"
)

// Scenario 7: a GetTask answer larger than grpc-go's 4 MiB receive limit, through both
// backend generations.

func bulkyTask(t *testing.T, size int, runningFirst, toFile bool) Task {
	return Task{
		Template: template("bulky", "", vars("text", "STRING"),
			map[string]any{"size": size, "running_first": runningFirst, "to_file": toFile}),
		OutputPrefix: t.TempDir(), Name: "bulky",
	}
}

// `serve --max-response-bytes` (default 4 MiB, grpc-go's receive limit) never sends a
// larger answer: a SUCCEEDED task's outputs go to <output_prefix>/outputs.pb, which the
// backend reads, and the answer carries none; where that cannot be written the task fails
// for good with a message naming the size and the limit. Before, every such GetTask failed
// with RESOURCE_EXHAUSTED until the error budget was spent (or, after a RUNNING answer,
// the task hung in Running).
func TestOutputsOver4MiBGoToOutputsPb(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		ctx := context.Background()

		// Just under the limit: read inline.
		_, out := p.Run(ctx, bulkyTask(t, 4<<20-4096, false, false), poll, within)
		expect(t, out, Success, "")
		if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != 4<<20-4096 {
			t.Fatalf("output of %d bytes, want %d", len(text), 4<<20-4096)
		}

		// Over it, as the first answer and after a RUNNING one: read from outputs.pb.
		for _, runningFirst := range []bool{false, true} {
			item, out := p.Run(ctx, bulkyTask(t, 5<<20, runningFirst, false), poll, within)
			expect(t, out, Success, "")
			if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != 5<<20 {
				t.Fatalf("output of %d bytes, want %d", len(text), 5<<20)
			}
			if item.SyncFailures != 0 {
				t.Fatalf("%d GetTask errors", item.SyncFailures)
			}
		}

		// An output prefix the daemon cannot write to: a permanent failure that says why.
		task := bulkyTask(t, 5<<20, false, false)
		task.OutputPrefix = "nope://bucket/prefix"
		item, out := p.Run(ctx, task, poll, within)
		expect(t, out, PermanentFailure, "", "over the 4194304-byte limit", "--max-response-bytes",
			"nope://bucket/prefix/outputs.pb")
		if item.SyncFailures != 0 {
			t.Fatalf("%d GetTask errors", item.SyncFailures)
		}
	})
}

// The way out the backend offers: SUCCEEDED without inline outputs, which it then reads
// from <output_prefix>/outputs.pb, whatever their size.
func TestOutputsOver4MiBFromOutputsPbSucceed(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		item, out := p.Run(context.Background(), bulkyTask(t, 5<<20, false, true), poll, within)
		expect(t, out, Success, "")
		if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != 5<<20 {
			t.Fatalf("output of %d bytes, want %d", len(text), 5<<20)
		}
		if item.SyncFailures != 0 {
			t.Fatalf("%d GetTask errors", item.SyncFailures)
		}
	})
}

// Answers within a few bytes of the limit: whichever size lands exactly at it (the inline
// text plus about 43 bytes today), no GetTask fails. Flyte 1's answer is the Flyte 2 one
// the daemon measured plus the deprecated `state`: at the edge those bytes must not push
// it over grpc-go's limit (they did: ResourceExhausted on every poll).
func TestAnswersAtTheLimitSucceed(t *testing.T) {
	eachBackend(t, func(t *testing.T, s *Schema) {
		p := plugin(t, s, DefaultDeployment(shared(t).Address))
		for size := 4<<20 - 48; size <= 4<<20-40; size++ {
			item, out := p.Run(context.Background(), bulkyTask(t, size, false, false), poll, within)
			expect(t, out, Success, "")
			if text, _ := scalar(t, out.Outputs, "text").(string); len(text) != size {
				t.Fatalf("output of %d bytes, want %d", len(text), size)
			}
			if item.SyncFailures != 0 {
				t.Fatalf("%d GetTask errors for an output of %d bytes", item.SyncFailures, size)
			}
		}
	})
}
