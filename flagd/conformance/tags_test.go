package conformance

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTagConnectionLoss(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"scenario with a connection loss": {
			in: `Feature: f
  Background:
    Given a stable flagd provider

  Scenario: chain
    Given a ready event handler
    When the connection is lost for 3s

  Scenario: change
    When the flag was modified`,
			want: `Feature: f
  Background:
    Given a stable flagd provider

  @connection-loss
  Scenario: chain
    Given a ready event handler
    When the connection is lost for 3s

  Scenario: change
    When the flag was modified`,
		},
		"outline below existing tags, examples included": {
			in: `  @rpc @reconnect
  Scenario Outline: reconnect
    Given a <name> flagd provider
    When the connection is lost for 5s

    Examples:
      | name |
      | stable |`,
			want: `  @rpc @reconnect
  @connection-loss
  Scenario Outline: reconnect
    Given a <name> flagd provider
    When the connection is lost for 5s

    Examples:
      | name |
      | stable |`,
		},
		"comments and other scenarios do not count": {
			in: `  Scenario: a
    Given a stable flagd provider
    # When the connection is lost for 5s
  Scenario: b
    When the connection is lost for 1s`,
			want: `  Scenario: a
    Given a stable flagd provider
    # When the connection is lost for 5s
  @connection-loss
  Scenario: b
    When the connection is lost for 1s`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, tagConnectionLoss(tt.in)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
