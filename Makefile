.PHONY: test build demo

build:
	go build -o bin/flagwarden ./cmd/flagwarden

test:
	scripts/test.sh

demo:
	go run ./cmd/flagwarden demo
