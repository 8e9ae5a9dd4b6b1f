%% The reference side of tests/runtime/test_otp_differential.py: runs each scenario's supervision
%% tree and fault script on real Erlang/OTP `supervisor`s and writes the trace the Python side
%% compares with our runtime's.
%%
%% Usage: erl -noshell -pa DIR -run otp_diff main SCENARIOS.terms OUT.txt
%% SCENARIOS.terms (file:consult) holds one term per scenario:
%%   {scenario, Id, Root, Sups, Workers, Steps}
%%   Sups    = [{Name, Strategy, Intensity, Period, Restart, Shutdown, [ChildName]}]
%%   Workers = [{Name, Restart, Shutdown, SlowStopMs}]  (terminate(shutdown) takes SlowStopMs)
%%   Steps   = [{crash, N} | {stop, N, Reason} | {kill, N, ...} | {sleep, Ms} | {await, TraceLine}
%%              | {refuse_starts, N, Count}]  (its next Count starts fail in init: "refuse N")
%% The tree settles after every step but one followed by an await, which waits for that line
%% to be traced instead (to fault a tree in the middle of its reaction to the step before).
%% OUT.txt gets, per scenario, "scenario Id", its trace lines, and "end".
%%
%% One module plays both callback roles (supervisor and gen_server): init/1 tells them apart by
%% its argument. Every worker traps exits so that its terminate/2 runs on a shutdown, as our
%% runtime's terminate hook does; a killed worker runs none, in both.
-module(otp_diff).
-export([main/1, start_sup/2, start_worker/2, init/1, handle_call/3, handle_cast/2,
         handle_info/2, terminate/2]).

main([In, Out]) ->
    logger:set_primary_config(level, none),
    {ok, Scenarios} = file:consult(In),
    Lines = lists:flatmap(fun run_scenario/1, Scenarios),
    ok = file:write_file(Out, [[L, $\n] || L <- Lines]),
    halt(0).

%% -- one scenario ---------------------------------------------------------------------------

run_scenario({scenario, Id, Root, Sups, Workers, Steps}) ->
    Self = self(),
    {Runner, Ref} = spawn_monitor(fun() -> Self ! {self(), run(Root, Sups, Workers, Steps)} end),
    Lines = receive
                {Runner, Trace} -> Trace;
                {'DOWN', Ref, process, Runner, Why} -> [fmt("the harness failed: ~p", [Why])]
            end,
    [fmt("scenario ~s", [Id]) | Lines] ++ ["end"].

run(Root, Sups, Workers, Steps) ->
    process_flag(trap_exit, true),
    Tracer = spawn_link(fun() -> collect([], []) end),
    ets:new(otp_diff_refusals, [named_table, public]),
    register(otp_diff_trace, Tracer),
    put(tree, {Sups, Workers}),
    {ok, RootPid} = start_sup(Root, {Sups, Workers}),
    settle(Root),
    run_steps(Root, Steps),
    trace(fmt("alive ~s", [join(alive())])),
    case is_process_alive(RootPid) of
        true ->  % ordered shutdown, as the parent of the root
            exit(RootPid, shutdown),
            receive {'EXIT', RootPid, _} -> ok end;
        false ->
            receive {'EXIT', RootPid, Why} -> trace(fmt("exit ~s ~s", [Root, reason(Why)])) end
    end,
    Tracer ! {get, self()},
    receive {events, Events} -> ok end,
    % the names go now, not when this process's exit reaches their owners: the next scenario
    % registers them again at once
    unregister(otp_diff_trace),
    exit(Tracer, kill),
    ets:delete(otp_diff_refusals),
    Events.

run_steps(_, []) -> ok;
run_steps(Root, [Step, {await, Line} | Rest]) ->
    step(Step),
    otp_diff_trace ! {await, Line, self()},
    receive {traced, Line} -> run_steps(Root, Rest) end;
run_steps(Root, [Step | Rest]) ->
    step(Step),
    settle(Root),
    run_steps(Root, Rest).

step({crash, N}) -> catch gen_server:call(N, crash);
step({stop, N, Reason}) -> await_down(N, fun() -> gen_server:call(N, {stop, Reason}) end);
step(Kill) when element(1, Kill) =:= kill ->  % {kill, N, ...}: all of them at once
    Names = tl(tuple_to_list(Kill)),
    Refs = [monitor(process, whereis(N)) || N <- Names],
    [exit(whereis(N), kill) || N <- Names],
    [receive {'DOWN', Ref, process, _, _} -> ok end || Ref <- Refs];
step({sleep, Ms}) -> timer:sleep(Ms);  % the passage of time is what such a step tests
step({refuse_starts, N, Count}) -> ets:insert(otp_diff_refusals, {N, Count}), step({crash, N}).

await_down(N, Act) ->
    Ref = monitor(process, whereis(N)),
    Act(),
    receive {'DOWN', Ref, process, _, _} -> ok end.

%% Every supervisor handles an exit in one go (restarts included) before its next message, so
%% a synchronous request to each, deepest first, waits out the work a fault caused; escalation
%% may hand work upwards meanwhile, hence the repetition until nothing changes.
settle(Root) -> settle(Root, snapshot()).
settle(Root, Before) ->
    {Sups, _} = get(tree),
    [catch sys:get_state(S, 10000) || {S, _, _, _, _, _, _} <- lists:reverse(Sups), whereis(S) =/= undefined],
    case snapshot() of
        Before -> ok;
        After -> settle(Root, After)
    end.

snapshot() ->
    otp_diff_trace ! {count, self()},
    receive {count, Count} -> {Count, alive()} end.

alive() ->
    {Sups, Workers} = get(tree),
    Names = [element(1, S) || S <- Sups] ++ [element(1, W) || W <- Workers],
    lists:sort([atom_to_list(N) || N <- Names, whereis(N) =/= undefined]).

%% -- the trace --------------------------------------------------------------------------------

collect(Events, Waiters) ->
    receive
        {event, E} ->
            [From ! {traced, E} || {L, From} <- Waiters, L =:= E],
            collect([E | Events], [W || {L, _} = W <- Waiters, L =/= E]);
        {await, Line, From} ->
            case lists:member(Line, Events) of
                true -> From ! {traced, Line}, collect(Events, Waiters);
                false -> collect(Events, [{Line, From} | Waiters])
            end;
        {count, From} -> From ! {count, length(Events)}, collect(Events, Waiters);
        {get, From} -> From ! {events, lists:reverse(Events)}, collect(Events, Waiters)
    end.

trace(Line) -> otp_diff_trace ! {event, Line}.

reason(normal) -> "normal";
reason(shutdown) -> "shutdown";
reason({shutdown, _}) -> "shutdown";
reason(killed) -> "killed";
reason(_) -> "crash".

fmt(Format, Args) -> lists:flatten(io_lib:format(Format, Args)).

join(Names) -> string:join(Names, " ").

%% -- the tree -------------------------------------------------------------------------------

start_sup(Name, Tree) -> supervisor:start_link({local, Name}, ?MODULE, {sup, Name, Tree}).

start_worker(Name, SlowStopMs) ->
    gen_server:start_link({local, Name}, ?MODULE, {worker, Name, SlowStopMs}, []).

init({sup, Name, {Sups, _} = Tree}) ->
    {Name, Strategy, Intensity, Period, _, _, Children} = lists:keyfind(Name, 1, Sups),
    Specs = [child_spec(C, Tree) || C <- Children],
    {ok, {#{strategy => Strategy, intensity => Intensity, period => Period}, Specs}};
init({worker, Name, SlowStopMs}) ->
    process_flag(trap_exit, true),
    case ets:lookup(otp_diff_refusals, Name) of
        [{Name, Count}] when Count > 0 ->
            ets:insert(otp_diff_refusals, {Name, Count - 1}),
            trace(fmt("refuse ~s", [Name])),
            {stop, refused};
        _ ->
            trace(fmt("start ~s", [Name])),
            {ok, {Name, SlowStopMs}}
    end.

child_spec(C, {Sups, Workers} = Tree) ->
    case lists:keyfind(C, 1, Sups) of
        {C, _, _, _, Restart, Shutdown, _} ->
            #{id => C, start => {?MODULE, start_sup, [C, Tree]}, restart => Restart,
              shutdown => Shutdown, type => supervisor};
        false ->
            {C, Restart, Shutdown, SlowStopMs} = lists:keyfind(C, 1, Workers),
            #{id => C, start => {?MODULE, start_worker, [C, SlowStopMs]}, restart => Restart,
              shutdown => Shutdown, type => worker}
    end.

handle_call(crash, _From, _State) -> erlang:error(crash_on_request);
handle_call({stop, Reason}, _From, State) -> {stop, Reason, ok, State}.

handle_cast(_Msg, State) -> {noreply, State}.

handle_info(_Msg, State) -> {noreply, State}.

terminate(Reason, {Name, SlowStopMs}) ->
    trace(fmt("stop ~s ~s", [Name, reason(Reason)])),
    Reason =:= shutdown andalso timer:sleep(SlowStopMs).
