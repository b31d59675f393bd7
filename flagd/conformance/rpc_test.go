package conformance

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"buf.build/gen/go/open-feature/flagd/connectrpc/go/flagd/evaluation/v2/evaluationv2connect"
	evalv2 "buf.build/gen/go/open-feature/flagd/protocolbuffers/go/flagd/evaluation/v2"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/flagpole-dev/flagpole/flagd/conformance/steps"
	"github.com/flagpole-dev/flagpole/flagd/eval"
)

// selectorHeader carries the selector on every flagd API.
const selectorHeader = "Flagd-Selector"

// rpcProvider is an rpc-mode flagd provider: every evaluation is a
// flagd.evaluation.v2 call over gRPC (connect-go's gRPC protocol over HTTP/2), and
// events come from EventStream, as in the OpenFeature flagd providers.
type rpcProvider struct {
	client   evaluationv2connect.ServiceClient
	selector string
	log      *eventLog
	cancel   context.CancelFunc
	done     chan struct{}
}

// newRPCProvider opens the event stream and waits for provider_ready.
func newRPCProvider(ctx context.Context, d *daemon, selector string) (*rpcProvider, error) {
	p := &rpcProvider{
		client:   evaluationv2connect.NewServiceClient(d.httpClient, d.evalURL, connect.WithGRPC()),
		selector: selector,
		log:      newEventLog(),
		done:     make(chan struct{}),
	}
	streamCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	req := connect.NewRequest(&evalv2.EventStreamRequest{})
	p.setSelector(req.Header())
	stream, err := p.client.EventStream(streamCtx, req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("EventStream: %w", err)
	}
	go func() {
		defer close(p.done)
		defer func() { _ = stream.Close() }()
		for stream.Receive() {
			msg := stream.Msg()
			switch msg.GetType() {
			case "provider_ready":
				p.log.add(event{Type: eventReady})
			case "configuration_change":
				flags := msg.GetData().GetFields()["flags"].GetStructValue().GetFields()
				keys := make([]string, 0, len(flags))
				for k := range flags {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				p.log.add(event{Type: eventChange, Flags: keys})
			}
		}
		if streamCtx.Err() == nil { // not our own close
			p.log.add(event{Type: eventError, Detail: fmt.Sprint(stream.Err())})
		}
	}()
	if _, _, err := p.log.wait(ctx, eventReady, 0); err != nil {
		p.close()
		return nil, fmt.Errorf("rpc provider: %w", err)
	}
	return p, nil
}

func (p *rpcProvider) setSelector(h interface{ Set(string, string) }) {
	if p.selector != "" {
		h.Set(selectorHeader, p.selector)
	}
}

func (p *rpcProvider) events() *eventLog { return p.log }

func (p *rpcProvider) close() {
	p.cancel()
	<-p.done
}

// v2Response is what every typed v2 response has besides its value.
type v2Response interface {
	GetReason() string
	GetVariant() string
	HasValue() bool
	GetMetadata() *structpb.Struct
}

// Resolve calls the typed v2 method for typ.
func (p *rpcProvider) Resolve(ctx context.Context, key string, typ eval.Type, evalCtx map[string]any) (steps.Outcome, error) {
	pctx, err := structpb.NewStruct(evalCtx)
	if err != nil {
		return steps.Outcome{}, fmt.Errorf("evaluation context: %w", err)
	}
	var (
		resp  v2Response
		value func() any
	)
	switch typ {
	case eval.TypeBoolean:
		req := connect.NewRequest(&evalv2.ResolveBooleanRequest{FlagKey: key, Context: pctx})
		p.setSelector(req.Header())
		r, rerr := p.client.ResolveBoolean(ctx, req)
		if err = rerr; err == nil {
			resp, value = r.Msg, func() any { return r.Msg.GetValue() }
		}
	case eval.TypeString:
		req := connect.NewRequest(&evalv2.ResolveStringRequest{FlagKey: key, Context: pctx})
		p.setSelector(req.Header())
		r, rerr := p.client.ResolveString(ctx, req)
		if err = rerr; err == nil {
			resp, value = r.Msg, func() any { return r.Msg.GetValue() }
		}
	case eval.TypeInteger:
		req := connect.NewRequest(&evalv2.ResolveIntRequest{FlagKey: key, Context: pctx})
		p.setSelector(req.Header())
		r, rerr := p.client.ResolveInt(ctx, req)
		if err = rerr; err == nil {
			resp, value = r.Msg, func() any { return r.Msg.GetValue() }
		}
	case eval.TypeFloat:
		req := connect.NewRequest(&evalv2.ResolveFloatRequest{FlagKey: key, Context: pctx})
		p.setSelector(req.Header())
		r, rerr := p.client.ResolveFloat(ctx, req)
		if err = rerr; err == nil {
			resp, value = r.Msg, func() any { return r.Msg.GetValue() }
		}
	case eval.TypeObject:
		req := connect.NewRequest(&evalv2.ResolveObjectRequest{FlagKey: key, Context: pctx})
		p.setSelector(req.Header())
		r, rerr := p.client.ResolveObject(ctx, req)
		if err = rerr; err == nil {
			resp, value = r.Msg, func() any { return r.Msg.GetValue().AsMap() }
		}
	default:
		return steps.Outcome{}, fmt.Errorf("no v2 method for type %v", typ)
	}
	if err != nil {
		return errorOutcome(err)
	}
	out := steps.Outcome{
		HasValue: resp.HasValue(),
		Variant:  resp.GetVariant(),
		Reason:   resp.GetReason(),
		Metadata: resp.GetMetadata().AsMap(),
	}
	if out.HasValue {
		out.Value = value()
	}
	return out, nil
}

// errorOutcome maps an error response as the OpenFeature flagd providers do:
// NotFound → FLAG_NOT_FOUND, InvalidArgument → TYPE_MISMATCH, DataLoss → PARSE_ERROR,
// anything else → GENERAL. Transport failures (no connect error, Unavailable,
// Canceled, DeadlineExceeded) fail the step instead: they are not resolutions.
func errorOutcome(err error) (steps.Outcome, error) {
	var ce *connect.Error
	if !errors.As(err, &ce) {
		return steps.Outcome{}, err
	}
	code := eval.ErrorGeneral
	switch ce.Code() {
	case connect.CodeNotFound:
		code = eval.ErrorFlagNotFound
	case connect.CodeInvalidArgument:
		code = eval.ErrorTypeMismatch
	case connect.CodeDataLoss:
		code = eval.ErrorParse
	case connect.CodeUnavailable, connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return steps.Outcome{}, fmt.Errorf("transport failure: %w", err)
	}
	return steps.Outcome{Reason: string(eval.ReasonError), ErrorCode: string(code)}, nil
}
