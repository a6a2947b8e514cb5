package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Scenario 9: Flyte 1 propeller's connector plugin against the daemon's Flyte 1 agent API,
// where it differs from Flyte 2's: secrets from the daemon's connections file (a Flyte 1
// request carries no connection), flytekit connectors, the deprecated state an older
// propeller reads, and the sync path (ExecuteTaskSync).

func TestFlyte1FlyteSDKConnectorThroughTheAdapter(t *testing.T) {
	p := plugin(t, schemaV1, DefaultDeployment(shared(t).Address))
	if sync, listed := p.categories[categoryKey("flyte_counter", 0)]; !listed || sync {
		t.Fatalf("ListAgents: flyte_counter listed %v, sync %v; want listed, async", listed, sync)
	}
	// The api_key and the region come from the daemon's connections file (main_test.go).
	countThrough(t, p, "v1adapter")
}

// A propeller older than the resource's phase maps the deprecated state alone: the daemon
// fills it in for every phase it answers.
func TestFlyte1OlderPropellerReadsTheState(t *testing.T) {
	p := plugin(t, schemaV1, DefaultDeployment(shared(t).Address))
	p.StateOnly = true
	task := shellTask(t, `echo state > "$FLYTE_OUTPUT_DIR/said.txt"`, nil, "",
		vars("exit_code", "INTEGER", "said", `{"blob": {"dimensionality": "SINGLE"}}`),
		map[string]string{"said": "said.txt"})
	_, out := p.Run(context.Background(), task, poll, within)
	expect(t, out, Success, "")
	if text := readURI(t, scalar(t, out.Outputs, "said")); text != "state\n" {
		t.Fatalf("said output %q", text)
	}
	failing := shellTask(t, `echo "no route" >&2; exit 4`, nil, "", vars("exit_code", "INTEGER"), nil)
	_, out = p.Run(context.Background(), failing, poll, within)
	expect(t, out, PermanentFailure, TaskFailedWithError, "failed to run the job.\nexit code 4", "no route")

	label := fmt.Sprintf("v1state%d", time.Now().UnixNano()%1_000_000_000)
	item, _ := p.Launch(context.Background(), counterTask(t, 2, label))
	p.Check(context.Background(), item) // QUEUED
	expect(t, p.Check(context.Background(), item), Running, "")
	expect(t, p.Follow(context.Background(), item, poll, within), Success, "")
}

const (
	kitToken   = "kit-t0ken-value"
	kitChatKey = "sk-chat-s3cret-key"
)

// kitDaemon serves the flytekit connectors of tests/fixtures/connectors/flytekit_style.py,
// their secrets in the environment where flytekit's secrets lookup reads them.
func kitDaemon(t *testing.T) *Daemon {
	t.Helper()
	return startDaemonEnv(t, 0, []string{"_FSEC_KIT_TOKEN=" + kitToken, "_FSEC_KIT_CHAT_KEY=" + kitChatKey},
		"--state-dir", t.TempDir(), "--plugins", "none", "-m", "flytekit_style")
}

func TestFlyte1FlytekitConnectorsAsyncAndSync(t *testing.T) {
	d := kitDaemon(t)
	p := plugin(t, schemaV1, DefaultDeployment(d.Address))
	for key, sync := range map[string]bool{"kit_counter/0": false, "kit_chat/0": true} {
		if got, listed := p.categories[key]; !listed || got != sync {
			t.Fatalf("ListAgents: %s listed %v, is_sync %v; want is_sync %v", key, listed, got, sync)
		}
	}
	t.Run("async", func(t *testing.T) { kitCounter(t, p) })
	t.Run("sync", func(t *testing.T) { kitChat(t, p) })
}

func kitCounter(t *testing.T, p *Plugin) {
	ctx := context.Background()
	task := func(n int, label string) Task {
		return Task{Template: template("kit_counter", vars("n", "INTEGER", "label", "STRING"),
			vars("total", "INTEGER", "label", "STRING"), map[string]any{}),
			Inputs: literals(map[string]any{"n": n, "label": label}), OutputPrefix: t.TempDir(), Name: label}
	}
	label := fmt.Sprintf("run%d", time.Now().UnixNano()%1_000_000)
	job := fmt.Sprintf("kit-3-%s-%d", label, len(kitToken))
	item, out := p.Launch(ctx, task(3, label))
	expect(t, out, Queued, "")
	out = p.Check(ctx, item)
	expect(t, out, Running, "")
	expectLink(t, out, "Kit", "https://kit.example/"+job)
	if info := out.Resource["custom_info"].(map[string]any); info["job"] != job {
		t.Fatalf("custom_info %v", info)
	}
	out = p.Follow(ctx, item, poll, within)
	expect(t, out, Success, "")
	if total, text := scalar(t, out.Outputs, "total"), scalar(t, out.Outputs, "label"); total != "6" ||
		text != strings.ToUpper(job) {
		t.Fatalf("outputs total %v, label %v", total, text)
	}
	_, out = p.Run(ctx, task(-1, label+"neg"), poll, within)
	expect(t, out, PermanentFailure, TaskFailedWithError, "failed to run the job: cannot count below zero")

	// Abort while it runs: DeleteTask reaches the connector's (blocking) delete.
	item, _ = p.Launch(ctx, task(5, label+"abort"))
	expect(t, p.Check(ctx, item), Running, "")
	if err := p.Abort(ctx, item); err != nil {
		t.Fatalf("abort: %v", err)
	}
}

// fakeChat is a chat API on 127.0.0.1 as flytekit_style.py's sync connector calls it:
// the prompt reversed, or an error for "fail"; it records the Authorization headers.
func fakeChat(t *testing.T) (string, func() []string) {
	var mu sync.Mutex
	var seen []string
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Prompt string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		answer := map[string]string{"text": reverse(body.Prompt)}
		if body.Prompt == "fail" {
			answer = map[string]string{"error": "bad prompt"}
		}
		_ = json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(server.Close)
	return server.URL + "/v1/chat", func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func reverse(s string) string {
	r := []rune(s)
	slices.Reverse(r)
	return string(r)
}

func kitChat(t *testing.T, p *Plugin) {
	url, seen := fakeChat(t)
	task := func(prompt string) Task {
		return Task{Template: template("kit_chat", vars("prompt", "STRING"), vars("o0", "STRING"),
			map[string]any{"url": url}), Inputs: literals(map[string]any{"prompt": prompt}),
			OutputPrefix: t.TempDir(), Name: "chat"}
	}
	item, out := p.Launch(context.Background(), task("hello"))
	expect(t, out, Success, "")
	if item != nil {
		t.Fatalf("a sync task left a cache item to poll: %+v", item)
	}
	if text := scalar(t, out.Outputs, "o0"); text != "olleh" {
		t.Fatalf("o0 output %v, want olleh", text)
	}
	// The connector raised: the task's error code is the agent_error's.
	_, out = p.Launch(context.Background(), task("fail"))
	expect(t, out, PermanentFailure, "RuntimeError", "failed to run the job: ", "the chat API refused: bad prompt")
	if got := seen(); !slices.Equal(got, []string{"Bearer " + kitChatKey, "Bearer " + kitChatKey}) {
		t.Fatalf("the chat API saw Authorization %q", got)
	}
	if strings.Contains(out.Message, kitChatKey) {
		t.Fatalf("the failure shows the API key: %s", out.Message)
	}
}

// expectLink fails the test unless the outcome's resource has exactly the one log link.
func expectLink(t *testing.T, out Outcome, name, uri string) {
	t.Helper()
	links, _ := out.Resource["log_links"].([]any)
	if len(links) != 1 || str(links[0].(map[string]any)["name"]) != name ||
		str(links[0].(map[string]any)["uri"]) != uri {
		t.Fatalf("log links %v, want one %s at %s", links, name, uri)
	}
}
