"""Round trips: `echo` returns its arguments unchanged; `echoAction` does the same through ctx.run_query;
`logHello` prints one line so clients receive logLines."""

from engine import action, query


@query
async def echo(ctx, args):
    return args


@action
async def echoAction(ctx, args):
    return await ctx.run_query("echo:echo", args)


@query
async def logHello(ctx, args):
    print("hello", 2)
    return None
