package backend

// The plugin's Status (plugins/webapi/connector/plugin.go) and writeOutput, for both
// generations: the phase mapping, Flyte 1's fallback to the deprecated `state` when the
// phase is UNDEFINED, the error code a Flyte 1 sync answer's `agent_error` gives, and
// outputs inline (named literals or a LiteralMap) or else from <output_prefix>/outputs.pb.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// status is the plugin's phase mapping of the last resource.
func (p *Plugin) status(ctx context.Context, item *Item) Outcome {
	tree := p.Client.schema.Tree(item.resource)
	message := str(tree["message"])
	out := Outcome{Resource: tree}
	code := TaskFailedWithError
	if agentError, _ := tree["agent_error"].(map[string]any); str(agentError["code"]) != "" {
		code = str(agentError["code"])
	}
	phase := phaseName(item.resource)
	if p.StateOnly {
		phase = "UNDEFINED"
	}
	switch phase {
	case "QUEUED":
		out.Phase, out.Message = Queued, message
	case "WAITING_FOR_RESOURCES":
		out.Phase, out.Message = WaitingResources, message
	case "INITIALIZING":
		out.Phase, out.Message = Initializing, message
	case "RUNNING":
		out.Phase = Running
	case "SUCCEEDED":
		p.succeed(item, &out)
	case "ABORTED":
		out.Phase, out.Code, out.Message = PermanentFailure, code, "failed to run the job with aborted phase."
	case "FAILED":
		out.Phase, out.Code, out.Message = PermanentFailure, code, "failed to run the job: "+message
	case "RETRYABLE_FAILED":
		out.Phase, out.Code, out.Message = RetryableFailure, code, "failed to run the job: "+message
	case "UNDEFINED":
		if has(item.resource, "state") {
			p.fromState(item, &out, message)
			break
		}
		fallthrough
	default:
		out.Err = fmt.Errorf("unknown execution phase [%s].", phase)
	}
	return out
}

// fromState maps Flyte 1's deprecated state, as the plugin does for an UNDEFINED phase.
func (p *Plugin) fromState(item *Item, out *Outcome, message string) {
	switch state := enumName(item.resource, "state"); state {
	case "PENDING":
		out.Phase, out.Message = Initializing, message
	case "RUNNING":
		out.Phase = Running
	case "PERMANENT_FAILURE":
		out.Phase, out.Code, out.Message = PermanentFailure, TaskFailedWithError, "failed to run the job.\n"+message
	case "RETRYABLE_FAILURE":
		out.Phase, out.Code, out.Message = RetryableFailure, TaskFailedWithError, "failed to run the job.\n"+message
	case "SUCCEEDED":
		p.succeed(item, out)
	default:
		out.Err = fmt.Errorf("unknown execution state [%s].", state)
	}
}

func (p *Plugin) succeed(item *Item, out *Outcome) {
	outputs, err := p.writeOutputs(item)
	if err != nil {
		out.Err = err
		return
	}
	out.Phase, out.Outputs = Success, outputs
}

// writeOutputs reads the outputs as the plugin does (inline, else <prefix>/outputs.pb)
// when the template declares any, and writes them to <prefix>/outputs.pb.
func (p *Plugin) writeOutputs(item *Item) (map[string]any, error) {
	s := p.Client.schema
	declared, _ := s.Tree(item.template)["interface"].(map[string]any)
	outputsDecl, _ := declared["outputs"].(map[string]any)
	if outputsDecl == nil || outputsDecl["variables"] == nil {
		return nil, nil
	}
	path := filepath.Join(strings.TrimPrefix(item.task.OutputPrefix, "file://"), "outputs.pb")
	literalMap := s.New(s.Core + ".LiteralMap")
	if item.resource.Has(field(item.resource, "outputs")) {
		copyOutputs(s, item.resource, literalMap)
		raw, err := proto.Marshal(literalMap)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, raw, 0o600); err != nil {
			return nil, err
		}
	} else {
		// The backend reads the file when it gathers the node's outputs; a file it cannot
		// read is a system error there, as it is here.
		raw, err := os.ReadFile(path)
		if err == nil {
			err = proto.Unmarshal(raw, literalMap)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read data from dataDir [%s]. Error: %v", path, err)
		}
	}
	literals, _ := s.Tree(literalMap)["literals"].(map[string]any)
	return literals, nil
}

// copyOutputs puts a resource's inline outputs into literalMap: a LiteralMap as it is
// (Flyte 1), Flyte 2's named literals by name.
func copyOutputs(s *Schema, resource, literalMap *dynamicpb.Message) {
	outputs := get(resource, "outputs").Message()
	if isLiteralMap(s, resource, "outputs") {
		proto.Merge(literalMap, outputs.Interface())
		return
	}
	target := literalMap.Mutable(field(literalMap, "literals")).Map()
	list := outputs.Get(outputs.Descriptor().Fields().ByName("literals")).List()
	for i := 0; i < list.Len(); i++ {
		named := list.Get(i).Message()
		name := named.Get(named.Descriptor().Fields().ByName("name")).String()
		target.Set(protoreflect.ValueOfString(name).MapKey(),
			named.Get(named.Descriptor().Fields().ByName("value")))
	}
}
