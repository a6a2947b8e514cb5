package backend

// Flyte 1 propeller's sync path (plugins/webapi/connector/plugin.go ExecuteTaskSync):
// for a task type whose connector ListAgents marks `is_sync`, Create opens the sync
// service's stream, sends a header (template, output prefix, execution metadata) and then
// the inputs, closes its side and reads one answer, whose header must carry the resource.
// The plugin keeps the resource's phase, outputs, message, log links, custom info and
// `agent_error` (not the deprecated state); the launcher concludes a terminal one at once.

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"
)

// executeSync runs the create request's task through the sync service: the resource it
// answered.
func (p *Plugin) executeSync(ctx context.Context, create *dynamicpb.Message) (*dynamicpb.Message, error) {
	header := p.Client.schema.New(p.pkg("CreateRequestHeader"))
	for _, name := range []string{"template", "output_prefix", "task_execution_metadata"} {
		header.Set(field(header, name), create.Get(field(create, name)))
	}
	first := p.Client.schema.New(p.pkg("ExecuteTaskSyncRequest"))
	set(first, "header", header)
	second := p.Client.schema.New(p.pkg("ExecuteTaskSyncRequest"))
	second.Set(field(second, "inputs"), create.Get(field(create, "inputs")))
	resp, err := p.Client.Exchange(ctx, p.dialect().Sync, "ExecuteTaskSync",
		[]proto.Message{first, second}, p.pkg("ExecuteTaskSyncResponse"))
	if err != nil {
		return nil, err
	}
	if !resp.ProtoReflect().Has(field(resp.(*dynamicpb.Message), "header")) {
		return nil, fmt.Errorf("expected header in the response, but got none")
	}
	return without(get(get(resp, "header").Message().Interface(), "resource"), "state"), nil
}
