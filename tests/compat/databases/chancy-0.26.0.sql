-- A database made and filled by Chancy 0.26.0 with tests/compat/databases/record.py.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: chancy_cron; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_cron (
    unique_key text NOT NULL,
    job jsonb NOT NULL,
    cron text NOT NULL,
    last_run timestamp with time zone,
    next_run timestamp with time zone NOT NULL,
    timezone text DEFAULT 'Etc/UTC'::text NOT NULL
);


--
-- Name: chancy_jobs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_jobs (
    id uuid NOT NULL,
    queue text NOT NULL,
    func text NOT NULL,
    kwargs jsonb DEFAULT '{}'::json NOT NULL,
    limits jsonb DEFAULT '[]'::json NOT NULL,
    meta jsonb DEFAULT '{}'::json NOT NULL,
    state character varying(25) DEFAULT 'pending'::character varying NOT NULL,
    priority integer DEFAULT 0,
    attempts integer DEFAULT 0,
    max_attempts integer DEFAULT 1 NOT NULL,
    taken_by text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    started_at timestamp with time zone,
    completed_at timestamp with time zone,
    scheduled_at timestamp with time zone DEFAULT now() NOT NULL,
    unique_key text,
    errors jsonb DEFAULT '[]'::json NOT NULL,
    claim_id uuid
);


--
-- Name: chancy_leader; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_leader (
    id bigint NOT NULL,
    worker_id text NOT NULL,
    first_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE UNLOGGED SEQUENCE public.chancy_leader_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_leader_id_seq OWNED BY public.chancy_leader.id;


--
-- Name: chancy_metric_definitions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_metric_definitions (
    id bigint NOT NULL,
    key text NOT NULL COLLATE pg_catalog."C",
    metric_type text NOT NULL,
    unit text NOT NULL,
    CONSTRAINT chancy_metric_definitions_metric_type_check CHECK ((metric_type = ANY (ARRAY['counter'::text, 'gauge'::text, 'histogram'::text])))
);


--
-- Name: chancy_metric_definitions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.chancy_metric_definitions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_metric_definitions_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_metric_definitions_id_seq OWNED BY public.chancy_metric_definitions.id;


--
-- Name: chancy_metrics; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_metrics (
    metric_id bigint NOT NULL,
    resolution integer NOT NULL,
    chunk timestamp with time zone NOT NULL,
    session_id uuid NOT NULL,
    worker_id text NOT NULL,
    buckets timestamp with time zone[] NOT NULL,
    counts bigint[],
    totals double precision[],
    minimums double precision[],
    maximums double precision[],
    gauges double precision[],
    sampled_at timestamp with time zone[] NOT NULL
);


--
-- Name: chancy_queue_rate_limits; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_queue_rate_limits (
    queue character varying(255) NOT NULL,
    window_start integer NOT NULL,
    count integer DEFAULT 0 NOT NULL
);


--
-- Name: chancy_queues; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_queues (
    name text NOT NULL,
    state text DEFAULT 'active'::text NOT NULL,
    concurrency integer DEFAULT 1,
    tags text[],
    executor text DEFAULT 'chancy.executors.process.ProcessExecutor'::text NOT NULL,
    executor_options jsonb,
    polling_interval integer DEFAULT 1,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    rate_limit integer,
    rate_limit_window integer,
    resume_at timestamp with time zone,
    eager_polling boolean DEFAULT false NOT NULL
);


--
-- Name: chancy_schema_version; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_schema_version (
    version_of character varying(255) NOT NULL,
    version integer
);


--
-- Name: chancy_workers; Type: TABLE; Schema: public; Owner: -
--

CREATE UNLOGGED TABLE public.chancy_workers (
    worker_id text NOT NULL,
    tags text[],
    queues text[],
    last_seen timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);


--
-- Name: chancy_workflow_steps; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflow_steps (
    id integer NOT NULL,
    workflow_id uuid,
    step_id text NOT NULL,
    job_data jsonb NOT NULL,
    dependencies jsonb NOT NULL,
    job_id uuid,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.chancy_workflow_steps_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.chancy_workflow_steps_id_seq OWNED BY public.chancy_workflow_steps.id;


--
-- Name: chancy_workflows; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.chancy_workflows (
    id uuid NOT NULL,
    name text NOT NULL,
    state text NOT NULL,
    created_at timestamp with time zone DEFAULT now(),
    updated_at timestamp with time zone DEFAULT now()
);


--
-- Name: chancy_leader id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader ALTER COLUMN id SET DEFAULT nextval('public.chancy_leader_id_seq'::regclass);


--
-- Name: chancy_metric_definitions id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions ALTER COLUMN id SET DEFAULT nextval('public.chancy_metric_definitions_id_seq'::regclass);


--
-- Name: chancy_workflow_steps id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps ALTER COLUMN id SET DEFAULT nextval('public.chancy_workflow_steps_id_seq'::regclass);


--
-- Data for Name: chancy_cron; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_cron (unique_key, job, cron, last_run, next_run, timezone) FROM stdin;
compat-cron	{"a": 1, "f": "tests.compat.fixture_jobs.tick", "k": {"label": "cron"}, "l": [], "m": {}, "p": 0, "q": "compat_later", "s": 1796419278.515137, "u": "compat-cron"}	0 0 1 1 *	\N	2026-12-31 23:00:00+00	Europe/Paris
\.


--
-- Data for Name: chancy_jobs; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_jobs (id, queue, func, kwargs, limits, meta, state, priority, attempts, max_attempts, taken_by, created_at, started_at, completed_at, scheduled_at, unique_key, errors, claim_id) FROM stdin;
03fd2568-ff44-4e57-8f84-434744be683e	compat_now	tests.compat.fixture_jobs.echo	{"n": 0, "label": "done"}	[]	{}	succeeded	0	1	1	52cff5e7-234d-441e-be90-146cad1d333d	2026-12-04 21:21:15.694374+00	2026-12-04 21:21:15.744684+00	2026-12-04 21:21:15.760275+00	2026-12-04 21:21:15.69407+00	\N	[]	e6b35ac0-8ef9-4028-92d0-4cf0672a328f
03fd2568-ff51-ad97-bf44-5f87e032640a	compat_now	tests.compat.fixture_jobs.fail	{"label": "failed"}	[]	{}	failed	0	1	1	52cff5e7-234d-441e-be90-146cad1d333d	2026-12-04 21:21:15.699748+00	2026-12-04 21:21:15.744684+00	2026-12-04 21:21:15.760343+00	2026-12-04 21:21:15.69952+00	\N	[{"attempt": 0, "traceback": "Traceback (most recent call last):\\n  File \\"/root/.pyenv/versions/3.11.7/lib/python3.11/concurrent/futures/thread.py\\", line 58, in run\\n    result = self.fn(*self.args, **self.kwargs)\\n             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n  File \\"/work/ref026/lib/python3.11/site-packages/chancy/executors/base.py\\", line 466, in job_wrapper\\n    result = cls.run_function(func, kwargs)\\n             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\\n  File \\"/work/ref026/lib/python3.11/site-packages/chancy/executors/base.py\\", line 272, in run_function\\n    return func(**kwargs)\\n           ^^^^^^^^^^^^^^\\n  File \\"/work/wt/dbcompat/tests/compat/fixture_jobs.py\\", line 20, in fail\\n    raise RuntimeError(f\\"fixture job failed on purpose ({kwargs})\\")\\nRuntimeError: fixture job failed on purpose ({'label': 'failed'})\\n"}]	cc60d42c-5363-4629-87fc-76d8ba15e4f5
03fd2569-0b03-65a7-a5aa-d7c95b77096f	compat_now	tests.compat.fixture_jobs.step	{"name": "fetch", "label": "fetch"}	[]	{"workflow_id": "03fd2568-ff56-9027-abce-ee5abfe2946b"}	succeeded	0	1	1	52cff5e7-234d-441e-be90-146cad1d333d	2026-12-04 21:21:16.899232+00	2026-12-04 21:21:16.954455+00	2026-12-04 21:21:16.962921+00	2026-12-04 21:21:15.701709+00	\N	[]	554f652f-1259-4467-b028-3796e6a1dcfe
03fd2569-14a3-e077-ab6b-6082f03c3cf6	compat_later	tests.compat.fixture_jobs.step	{"name": "index", "label": "index"}	[]	{"workflow_id": "03fd2568-ff56-9027-abce-ee5abfe2946b"}	pending	0	0	1	\N	2026-12-04 21:21:17.920042+00	\N	\N	2026-12-04 21:21:15.701727+00	\N	[]	\N
03fd2569-14d5-7077-9941-2def31cd68d2	compat_later	tests.compat.fixture_jobs.step	{"name": "parse", "label": "parse"}	[]	{"workflow_id": "03fd2568-ff56-9027-abce-ee5abfe2946b"}	pending	0	0	1	\N	2026-12-04 21:21:17.920042+00	\N	\N	2026-12-04 21:21:15.701723+00	\N	[]	\N
03fd2569-1979-9167-b1de-f9e7b1f65a81	compat_later	tests.compat.fixture_jobs.echo	{"n": 1, "text": "héllo wörld", "label": "waiting-1", "nested": {"a": [1, 2, {"b": null}]}}	[]	{}	pending	5	0	3	\N	2026-12-04 21:21:18.445446+00	\N	\N	2026-12-04 21:21:18.442216+00	compat-unique	[]	\N
03fd2569-19a1-d2d7-ade2-9ed1c2d3125e	compat_later	tests.compat.fixture_jobs.echo	{"n": 2, "label": "waiting-2"}	[{"t": "time", "v": 60}]	{}	pending	-2	0	1	\N	2026-12-04 21:21:18.458969+00	\N	\N	2026-12-04 21:21:18.4587+00	\N	[]	\N
03fd2569-19a9-5507-97ba-706305296cec	default	tests.compat.fixture_jobs.echo	{"n": 3, "label": "waiting-3"}	[]	{"recorded_by": "0.26.0"}	pending	10	0	1	\N	2026-12-04 21:21:18.461945+00	\N	\N	2026-12-04 21:21:18.461797+00	\N	[]	\N
03fd2569-19d9-fb97-9d95-e718050b6c6f	compat_later	tests.compat.fixture_jobs.echo	{"n": 4, "label": "future-1"}	[]	{}	pending	0	0	1	\N	2026-12-04 21:21:18.485736+00	\N	\N	2100-01-01 00:00:00+00	compat-future	[]	\N
03fd2569-1a0c-eb17-92ae-e466674fdbff	default	tests.compat.fixture_jobs.echo	{"n": 5, "label": "future-2"}	[]	{}	pending	1	0	1	\N	2026-12-04 21:21:18.50721+00	\N	\N	2099-06-01 12:30:00+00	\N	[]	\N
\.


--
-- Data for Name: chancy_leader; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_leader (id, worker_id, first_seen, expires_at) FROM stdin;
1	52cff5e7-234d-441e-be90-146cad1d333d	2026-12-04 21:21:16.874626+00	2026-12-04 21:21:22.879319+00
\.


--
-- Data for Name: chancy_metric_definitions; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_metric_definitions (id, key, metric_type, unit) FROM stdin;
1	global:status:failed	counter	count
2	global:status:succeeded	counter	count
3	job:tests.compat.fixture_jobs.echo:execution_time	histogram	seconds
4	job:tests.compat.fixture_jobs.echo:succeeded	counter	count
5	job:tests.compat.fixture_jobs.fail:execution_time	histogram	seconds
6	job:tests.compat.fixture_jobs.fail:failed	counter	count
7	job:tests.compat.fixture_jobs.step:execution_time	histogram	seconds
8	job:tests.compat.fixture_jobs.step:succeeded	counter	count
9	queue:compat_now:execution_time	histogram	seconds
10	queue:compat_now:failed	counter	count
11	queue:compat_now:succeeded	counter	count
12	queue:compat_now:throughput	counter	count
13	workflow:compat-workflow:started	counter	count
14	workflows:poll_runs	counter	count
15	workflows:state:running	counter	count
16	workflows:steps:queued	counter	count
\.


--
-- Data for Name: chancy_metrics; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_metrics (metric_id, resolution, chunk, session_id, worker_id, buckets, counts, totals, minimums, maximums, gauges, sampled_at) FROM stdin;
1	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897859+00"}
1	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897859+00"}
1	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897859+00"}
1	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897859+00"}
2	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918047+00"}
2	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918047+00"}
2	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918047+00"}
2	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918047+00"}
3	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	{1}	{0.015591}	{0.015591}	{0.015591}	\N	{"2026-12-04 21:21:16.89761+00"}
3	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	{1}	{0.015591}	{0.015591}	{0.015591}	\N	{"2026-12-04 21:21:16.89761+00"}
3	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	{1}	{0.015591}	{0.015591}	{0.015591}	\N	{"2026-12-04 21:21:16.89761+00"}
3	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	{1}	{0.015591}	{0.015591}	{0.015591}	\N	{"2026-12-04 21:21:16.89761+00"}
4	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897703+00"}
4	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897703+00"}
4	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897703+00"}
4	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897703+00"}
5	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	{1}	{0.015659}	{0.015659}	{0.015659}	\N	{"2026-12-04 21:21:16.897783+00"}
5	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	{1}	{0.015659}	{0.015659}	{0.015659}	\N	{"2026-12-04 21:21:16.897783+00"}
5	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	{1}	{0.015659}	{0.015659}	{0.015659}	\N	{"2026-12-04 21:21:16.897783+00"}
5	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	{1}	{0.015659}	{0.015659}	{0.015659}	\N	{"2026-12-04 21:21:16.897783+00"}
6	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897843+00"}
6	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897843+00"}
6	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897843+00"}
6	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897843+00"}
7	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	{1}	{0.008466}	{0.008466}	{0.008466}	\N	{"2026-12-04 21:21:17.917954+00"}
7	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	{1}	{0.008466}	{0.008466}	{0.008466}	\N	{"2026-12-04 21:21:17.917954+00"}
7	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	{1}	{0.008466}	{0.008466}	{0.008466}	\N	{"2026-12-04 21:21:17.917954+00"}
7	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	{1}	{0.008466}	{0.008466}	{0.008466}	\N	{"2026-12-04 21:21:17.917954+00"}
8	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:17.918031+00"}
8	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:17.918031+00"}
8	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:17.918031+00"}
8	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:17.918031+00"}
9	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	{3}	{0.039716}	{0.008466}	{0.015659}	\N	{"2026-12-04 21:21:17.917991+00"}
9	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	{3}	{0.039716}	{0.008466}	{0.015659}	\N	{"2026-12-04 21:21:17.917991+00"}
9	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	{3}	{0.039716}	{0.008466}	{0.015659}	\N	{"2026-12-04 21:21:17.917991+00"}
9	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	{3}	{0.039716}	{0.008466}	{0.015659}	\N	{"2026-12-04 21:21:17.917991+00"}
10	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897896+00"}
10	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897896+00"}
10	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897896+00"}
10	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.897896+00"}
11	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918113+00"}
11	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918113+00"}
11	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918113+00"}
11	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.918113+00"}
12	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.91807+00"}
12	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.91807+00"}
12	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.91807+00"}
12	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.91807+00"}
13	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.9539+00"}
13	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.9539+00"}
13	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.9539+00"}
13	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.9539+00"}
14	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.983874+00"}
14	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.983874+00"}
14	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.983874+00"}
14	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{2}	\N	\N	\N	{"2026-12-04 21:21:17.983874+00"}
15	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.953871+00"}
15	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.953871+00"}
15	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.953871+00"}
15	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{1}	\N	\N	\N	{"2026-12-04 21:21:16.953871+00"}
16	60	2026-12-04 21:12:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:21:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.983478+00"}
16	300	2026-12-04 21:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:20:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.983478+00"}
16	3600	2026-12-04 12:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 21:00:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.983478+00"}
16	86400	2026-11-27 00:00:00+00	71396733-0b0d-4b85-b283-ddf1f579b713	52cff5e7-234d-441e-be90-146cad1d333d	{"2026-12-04 00:00:00+00"}	\N	{3}	\N	\N	\N	{"2026-12-04 21:21:17.983478+00"}
\.


--
-- Data for Name: chancy_queue_rate_limits; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_queue_rate_limits (queue, window_start, count) FROM stdin;
\.


--
-- Data for Name: chancy_queues; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_queues (name, state, concurrency, tags, executor, executor_options, polling_interval, created_at, rate_limit, rate_limit_window, resume_at, eager_polling) FROM stdin;
compat_now	active	2	{.*}	chancy.executors.thread.ThreadedExecutor	{}	5	2026-12-04 21:21:15.66727+00	\N	\N	\N	f
compat_later	paused	3	{.*}	chancy.executors.thread.ThreadedExecutor	{}	2	2026-12-04 21:21:15.681336+00	100	60	\N	f
default	active	\N	{.*}	chancy.executors.process.ProcessExecutor	{}	5	2026-12-04 21:21:15.75527+00	\N	\N	\N	f
\.


--
-- Data for Name: chancy_schema_version; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_schema_version (version_of, version) FROM stdin;
chancy	8
metrics	2
workflow	3
cron	3
\.


--
-- Data for Name: chancy_workers; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workers (worker_id, tags, queues, last_seen, expires_at) FROM stdin;
52cff5e7-234d-441e-be90-146cad1d333d	{python=3.11.7,worker_id=52cff5e7-234d-441e-be90-146cad1d333d,os=Linux,arch=x86_64,*,hostname=vm}	{}	2026-12-04 21:21:15.735647+00	2026-12-04 21:22:45.735647+00
\.


--
-- Data for Name: chancy_workflow_steps; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workflow_steps (id, workflow_id, step_id, job_data, dependencies, job_id, created_at, updated_at) FROM stdin;
1	03fd2568-ff56-9027-abce-ee5abfe2946b	fetch	{"a": 1, "f": "tests.compat.fixture_jobs.step", "k": {"name": "fetch", "label": "fetch"}, "l": [], "m": {}, "p": 0, "q": "compat_now", "s": 1796419275.701709, "u": null}	[]	03fd2569-0b03-65a7-a5aa-d7c95b77096f	2026-12-04 21:21:15.701858+00	2026-12-04 21:21:17.920042+00
3	03fd2568-ff56-9027-abce-ee5abfe2946b	index	{"a": 1, "f": "tests.compat.fixture_jobs.step", "k": {"name": "index", "label": "index"}, "l": [], "m": {}, "p": 0, "q": "compat_later", "s": 1796419275.701727, "u": null}	["fetch"]	03fd2569-14a3-e077-ab6b-6082f03c3cf6	2026-12-04 21:21:15.701858+00	2026-12-04 21:21:17.920042+00
2	03fd2568-ff56-9027-abce-ee5abfe2946b	parse	{"a": 1, "f": "tests.compat.fixture_jobs.step", "k": {"name": "parse", "label": "parse"}, "l": [], "m": {}, "p": 0, "q": "compat_later", "s": 1796419275.701723, "u": null}	["fetch"]	03fd2569-14d5-7077-9941-2def31cd68d2	2026-12-04 21:21:15.701858+00	2026-12-04 21:21:17.920042+00
4	03fd2568-ff56-9027-abce-ee5abfe2946b	store	{"a": 1, "f": "tests.compat.fixture_jobs.step", "k": {"name": "store", "label": "store"}, "l": [], "m": {}, "p": 0, "q": "compat_later", "s": 1796419275.701733, "u": null}	["parse", "index"]	\N	2026-12-04 21:21:15.701858+00	2026-12-04 21:21:17.920042+00
\.


--
-- Data for Name: chancy_workflows; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.chancy_workflows (id, name, state, created_at, updated_at) FROM stdin;
03fd2568-ff56-9027-abce-ee5abfe2946b	compat-workflow	running	2026-12-04 21:21:15.701858+00	2026-12-04 21:21:17.920042+00
\.


--
-- Name: chancy_leader_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.chancy_leader_id_seq', 1, false);


--
-- Name: chancy_metric_definitions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.chancy_metric_definitions_id_seq', 16, true);


--
-- Name: chancy_workflow_steps_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.chancy_workflow_steps_id_seq', 12, true);


--
-- Name: chancy_cron chancy_cron_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_cron
    ADD CONSTRAINT chancy_cron_pkey PRIMARY KEY (unique_key);


--
-- Name: chancy_jobs chancy_jobs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_jobs
    ADD CONSTRAINT chancy_jobs_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader chancy_leader_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT chancy_leader_pkey PRIMARY KEY (id);


--
-- Name: chancy_leader chancy_leader_worker_id_unique; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_leader
    ADD CONSTRAINT chancy_leader_worker_id_unique UNIQUE (worker_id);


--
-- Name: chancy_metric_definitions chancy_metric_definitions_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions
    ADD CONSTRAINT chancy_metric_definitions_key_key UNIQUE (key);


--
-- Name: chancy_metric_definitions chancy_metric_definitions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metric_definitions
    ADD CONSTRAINT chancy_metric_definitions_pkey PRIMARY KEY (id);


--
-- Name: chancy_metrics chancy_metrics_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metrics
    ADD CONSTRAINT chancy_metrics_pkey PRIMARY KEY (metric_id, resolution, chunk, session_id);


--
-- Name: chancy_queue_rate_limits chancy_queue_rate_limits_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queue_rate_limits
    ADD CONSTRAINT chancy_queue_rate_limits_pkey PRIMARY KEY (queue);


--
-- Name: chancy_queues chancy_queues_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_queues
    ADD CONSTRAINT chancy_queues_pkey PRIMARY KEY (name);


--
-- Name: chancy_schema_version chancy_schema_version_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_schema_version
    ADD CONSTRAINT chancy_schema_version_pkey PRIMARY KEY (version_of);


--
-- Name: chancy_workers chancy_workers_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workers
    ADD CONSTRAINT chancy_workers_pkey PRIMARY KEY (worker_id);


--
-- Name: chancy_workflow_steps chancy_workflow_steps_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_pkey PRIMARY KEY (id);


--
-- Name: chancy_workflows chancy_workflows_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflows
    ADD CONSTRAINT chancy_workflows_pkey PRIMARY KEY (id);


--
-- Name: chancy_idx_jobs_fetch_prune; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_fetch_prune ON public.chancy_jobs USING btree (queue, state, attempts, scheduled_at, priority DESC, id DESC) WHERE ((state)::text = ANY ((ARRAY['pending'::character varying, 'retrying'::character varying])::text[]));


--
-- Name: chancy_idx_jobs_queue_state; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_idx_jobs_queue_state ON public.chancy_jobs USING btree (queue, state);


--
-- Name: chancy_jobs_unique_key; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_jobs_unique_key ON public.chancy_jobs USING btree (unique_key) WHERE ((unique_key IS NOT NULL) AND ((state)::text <> ALL ((ARRAY['succeeded'::character varying, 'failed'::character varying])::text[])));


--
-- Name: chancy_metrics_expiry_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_metrics_expiry_idx ON public.chancy_metrics USING btree (resolution, chunk);


--
-- Name: chancy_workflow_steps_workflow_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflow_steps_workflow_id_idx ON public.chancy_workflow_steps USING btree (workflow_id);


--
-- Name: chancy_workflows_active_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflows_active_id_idx ON public.chancy_workflows USING btree (id) WHERE (state = ANY (ARRAY['pending'::text, 'running'::text]));


--
-- Name: chancy_workflows_state_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX chancy_workflows_state_idx ON public.chancy_workflows USING btree (state);


--
-- Name: chancy_workflows_steps_unique_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX chancy_workflows_steps_unique_idx ON public.chancy_workflow_steps USING btree (workflow_id, step_id);


--
-- Name: chancy_metrics chancy_metrics_metric_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_metrics
    ADD CONSTRAINT chancy_metrics_metric_id_fkey FOREIGN KEY (metric_id) REFERENCES public.chancy_metric_definitions(id) ON DELETE RESTRICT;


--
-- Name: chancy_workflow_steps chancy_workflow_steps_workflow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.chancy_workflow_steps
    ADD CONSTRAINT chancy_workflow_steps_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES public.chancy_workflows(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


