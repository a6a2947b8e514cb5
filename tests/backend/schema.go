// Package backend drives a real `flyte-connector serve` the way the Flyte backend's
// connector plugin does: grpc-go with the plugin's dial options, deadlines and limits,
// and the plugin's lifecycle (create, poll with an error budget, phase mapping, outputs
// read inline or from <output_prefix>/outputs.pb, abort).
//
// The backend's own Go modules are not served by the module proxy this project can
// reach, so the messages are built from the descriptors of the Python packages the
// daemon runs on (flyteidl2, and flyteidl for Flyte 1: dump_descriptors.py) rather than
// from generated Go types.
package backend

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Dialect is one backend generation's connector protocol: where its types live, what
// its services are called, and the few ways its plugin's lifecycle differs. What the
// messages themselves tell apart (a request's `connection` or deprecated `task_type`, a
// resource's deprecated `state`, inputs and outputs as a LiteralMap or as named
// literals) plugin.go reads from the descriptors instead.
type Dialect struct {
	Name     string // the generation, and dump_descriptors.py's argument
	Service  string // proto package of the services
	Messages string // ... of the request and response messages
	Core     string // ... of TaskTemplate, LiteralMap, Connection
	Task     string // ... of Inputs and NamedLiteral ("" where inputs are a core.LiteralMap)

	Tasks, Metadata string // the async task service and the metadata service
	Sync            string // the sync service ("" where there is none)
	List, Listed    string // the metadata service's list method and its response's field
	// Keepalive: the plugin dials with keepalive pings (30 s / 10 s); Flyte 1 sets none.
	Keepalive bool
	// Unlisted: a task type ListAgents did not name goes to the default deployment
	// (Flyte 1); Flyte 2's plugin fails the create.
	Unlisted bool
	// Terminal are the resource phases at which the plugin's cache stops polling.
	Terminal []string
}

// Flyte2 is flyteidl2, what the Flyte 2 executor's connector plugin speaks.
var Flyte2 = Dialect{Name: "flyte2", Service: "flyteidl2.connector", Messages: "flyteidl2.connector",
	Core: "flyteidl2.core", Task: "flyteidl2.task",
	Tasks: "AsyncConnectorService", Metadata: "ConnectorMetadataService",
	List: "ListConnectors", Listed: "connectors", Keepalive: true,
	Terminal: []string{"SUCCEEDED", "FAILED", "RETRYABLE_FAILED", "ABORTED"}}

// Flyte1 is flyteidl's agent API, what Flyte 1 propeller's connector plugin speaks.
var Flyte1 = Dialect{Name: "flyte1", Service: "flyteidl.service", Messages: "flyteidl.admin",
	Core: "flyteidl.core", Tasks: "AsyncAgentService", Metadata: "AgentMetadataService",
	Sync: "SyncAgentService", List: "ListAgents", Listed: "agents", Unlisted: true,
	Terminal: []string{"SUCCEEDED", "FAILED", "ABORTED"}}

// Schema resolves the messages of one dialect by full name.
type Schema struct {
	files *protoregistry.Files
	types *dynamicpb.Types
	Dialect
}

// LoadSchema runs dump_descriptors.py with `python` for the dialect's generation and
// builds the registry from its output.
func LoadSchema(python, script string, dialect Dialect) (*Schema, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(python, script, dialect.Name)
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s", python, script, err, stderr.String())
	}
	set := &descriptorpb.FileDescriptorSet{}
	if err := proto.Unmarshal(raw, set); err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	files, err := protodesc.NewFiles(set)
	if err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	return &Schema{files: files, types: dynamicpb.NewTypes(files), Dialect: dialect}, nil
}

// New returns an empty message of the given full name; it panics on a name the schema lacks.
func (s *Schema) New(name string) *dynamicpb.Message {
	mt, err := s.types.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		panic(fmt.Sprintf("schema has no message %s: %v", name, err))
	}
	return dynamicpb.NewMessage(mt.Descriptor())
}

// FromJSON parses protojson text into a new message of the given full name.
func (s *Schema) FromJSON(name, text string) (*dynamicpb.Message, error) {
	msg := s.New(name)
	opts := protojson.UnmarshalOptions{Resolver: s.types}
	if err := opts.Unmarshal([]byte(text), msg); err != nil {
		return nil, fmt.Errorf("%s from JSON: %w", name, err)
	}
	return msg, nil
}

// TaskTemplate parses a core.TaskTemplate written as the suite writes them, in flyteidl2's
// form: where the dialect's VariableMap holds its variables in a map (flyteidl) rather
// than as a list of {key, value} entries, the interface's lists become maps first.
func (s *Schema) TaskTemplate(text string) (*dynamicpb.Message, error) {
	name := s.Core + ".TaskTemplate"
	variables := field(s.New(s.Core+".VariableMap"), "variables")
	if !variables.IsMap() {
		return s.FromJSON(name, text)
	}
	tree := map[string]any{}
	if err := json.Unmarshal([]byte(text), &tree); err != nil {
		return nil, fmt.Errorf("%s from JSON: %w", name, err)
	}
	iface, _ := tree["interface"].(map[string]any)
	for _, side := range []string{"inputs", "outputs"} {
		if decl, ok := iface[side].(map[string]any); ok {
			entries, _ := decl["variables"].([]any)
			asMap := map[string]any{}
			for _, entry := range entries {
				kv := entry.(map[string]any)
				asMap[str(kv["key"])] = kv["value"]
			}
			decl["variables"] = asMap
		}
	}
	raw, err := json.Marshal(tree)
	if err != nil {
		return nil, err
	}
	return s.FromJSON(name, string(raw))
}

// Tree is a message as generic JSON values (protojson field names), for assertions.
func (s *Schema) Tree(msg proto.Message) map[string]any {
	raw, err := protojson.MarshalOptions{Resolver: s.types, UseProtoNames: true}.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("protojson: %v", err))
	}
	out := map[string]any{}
	if err := json.Unmarshal(raw, &out); err != nil {
		panic(fmt.Sprintf("json: %v", err))
	}
	return out
}

// Method is the gRPC method path of a connector service method.
func (s *Schema) Method(service, method string) string {
	return fmt.Sprintf("/%s.%s/%s", s.Service, service, method)
}

func field(msg *dynamicpb.Message, name string) protoreflect.FieldDescriptor {
	f := msg.Descriptor().Fields().ByName(protoreflect.Name(name))
	if f == nil {
		panic(fmt.Sprintf("%s has no field %s", msg.Descriptor().FullName(), name))
	}
	return f
}

func get(msg proto.Message, name string) protoreflect.Value {
	m := msg.ProtoReflect()
	return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
}

func set(msg *dynamicpb.Message, name string, value any) {
	f := field(msg, name)
	switch v := value.(type) {
	case *dynamicpb.Message:
		msg.Set(f, protoreflect.ValueOfMessage(v))
	default:
		msg.Set(f, protoreflect.ValueOf(v))
	}
}

func asJSON(s *Schema, value protoreflect.Value) (string, error) {
	raw, err := protojson.MarshalOptions{Resolver: s.types}.Marshal(value.Message().Interface())
	return string(raw), err
}

// has says whether the message type has a field of that name.
func has(msg protoreflect.ProtoMessage, name string) bool {
	return msg.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name)) != nil
}
