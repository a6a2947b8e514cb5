// Package backend drives a real `flyte-connector serve` the way the Flyte backend's
// connector plugin does: grpc-go with the plugin's dial options, deadlines and limits,
// and the plugin's lifecycle (create, poll with an error budget, phase mapping, outputs
// read inline or from <output_prefix>/outputs.pb, abort).
//
// The backend's own Go modules are not served by the module proxy this project can
// reach, so the messages are built from the flyteidl2 descriptors of the Python package
// the daemon runs on (dump_descriptors.py) rather than from generated Go types.
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

// Dialect says where one backend generation keeps the connector protocol's types.
// A Flyte 1 variant (propeller's plugin, flyteidl's `flyteidl.service` services with
// `flyteidl.admin` messages and core.LiteralMap inputs and outputs) adds its own value,
// its descriptors, and the LiteralMap shapes where plugin.go builds named literals.
type Dialect struct {
	Service  string // proto package of the services
	Messages string // ... of the request and response messages
	Core     string // ... of TaskTemplate, LiteralMap, Connection
	Task     string // ... of Inputs and NamedLiteral
}

// Flyte2 is flyteidl2, what the Flyte 2 executor's connector plugin speaks.
var Flyte2 = Dialect{Service: "flyteidl2.connector", Messages: "flyteidl2.connector",
	Core: "flyteidl2.core", Task: "flyteidl2.task"}

// Schema resolves the messages of one dialect by full name.
type Schema struct {
	files *protoregistry.Files
	types *dynamicpb.Types
	Dialect
}

// LoadSchema runs dump_descriptors.py with `python` and builds the registry from its output.
func LoadSchema(python, script string) (*Schema, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(python, script)
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
	return &Schema{files: files, types: dynamicpb.NewTypes(files), Dialect: Flyte2}, nil
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
