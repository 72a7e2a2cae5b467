"""GraphQL, the third way in: strawberry on the same Litestar app, at /graphql.

    types.py      the output types every package shares (Job, ChannelCounts, JobPage, ...)
                  and the Long scalar (64-bit integers; GraphQL's Int has 32 bits)
    inputs.py     a payload input object to the dict a JSON client would have sent, its
                  validation by the channel's pydantic model, errors naming each field
    resolvers.py  what the generated Query and Mutation call: Client, errors as GraphQL
                  errors with an `extensions.code`
    subscriptions.py  what the generated Subscription calls: a channel's job events
                  (runtime.engine.events), its arguments and Redis checked first
    app.py        the schema (depth, token and alias limits), the controller (API keys,
                  over HTTP and WebSockets; GraphiQL on local assets) and the assets'
                  router

Generated code (`<package>/graphql_schema.py`) reaches these through
`runtime.generated_support` only. Imports the engine, never runtime.http or runtime.grpc.
"""
