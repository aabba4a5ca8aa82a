#!/bin/sh
# Seed 001's shell plugin, made to answer getmanifest: it declares `dumboption` and `dumbmethod`,
# answers init, and never answers anything else (so `dumbmethod` hangs forever).
# Messages from the node end in a blank line; each is read up to it and its id picked out.
read_message() {
    msg=""
    while IFS= read -r line; do
        [ -z "$line" ] && [ -n "$msg" ] && break
        msg="$msg$line"
    done
    [ -n "$msg" ]
}
get_id() {
    printf '%s' "$1" | sed -n 's/.*"id": *\("[^"]*"\|[0-9][0-9]*\).*/\1/p'
}
while read_message; do
    id=$(get_id "$msg")
    case "$msg" in
        *'"method": "getmanifest"'*|*'"method":"getmanifest"'*)
            printf '{"jsonrpc":"2.0","id":%s,"result":{"options":[{"name":"dumboption","type":"string","default":"dumb","description":"A dumb option."}],"rpcmethods":[{"name":"dumbmethod","usage":"","description":"Never answers."}]}}\n\n' "$id"
            ;;
        *'"method": "init"'*|*'"method":"init"'*)
            printf '{"jsonrpc":"2.0","id":%s,"result":{}}\n\n' "$id"
            ;;
        *) : ;;  # dumbmethod and everything else: no answer, ever
    esac
done
