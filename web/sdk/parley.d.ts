// Type declarations of Parley's browser SDK (parley.js).

export declare const CLOSE: Readonly<{
  GOING_AWAY: 1001;
  RESYNC: 4000;
  UNAUTHORISED: 4001;
  TOKEN_EXPIRED: 4002;
  FORBIDDEN_ORIGIN: 4003;
  TOO_MANY: 4008;
}>;

export declare const SEND_ATTEMPTS: number;
export declare const TYPING_REFRESH_MS: number;
export declare const TYPING_IDLE_MS: number;
export declare const HEARTBEAT_MS: number;
export declare const READ_DEBOUNCE_MS: number;

export interface Message {
  id: string;
  conversationId: string;
  seq: number;
  senderId: string;
  kind: 'text' | 'image' | 'file' | 'system';
  body: string;
  clientMessageId: string;
  createdAt: string;
  links?: { urls: string[]; live: boolean };
  redacted?: boolean;
  attachments?: unknown[];
  system?: { event: string; userId?: string; role?: string };
}

export interface Conversation {
  id: string;
  kind: 'direct' | 'group';
  context: { type: string; id: string; title?: string; subtitle?: string } | null;
  otherParticipant: { id: string; name: string; role: string } | null;
  memberCount: number;
  lastSeq: number;
  lastMessageAt: string | null;
  lastMessage: Message | null;
  unreadCount: number;
  lastReadSeq: number;
  requestState: 'none' | 'pending' | 'accepted' | 'declined';
  muted: boolean;
  archived: boolean;
  otherLastReadSeq: number | null;
  createdAt: string;
}

/** A message written here and not yet stored by the server. */
export interface OutboxEntry {
  clientMessageId: string;
  conversationId: string;
  body: string;
  attachmentIds?: string[];
  attempts: number;
  status: 'sending' | 'sent' | 'failed';
  createdAt: string;
  /** Why it failed; or, while still `sending`, a rate limit it waits out (`retryAfter` s). */
  error?: { code: string; message: string; retryAfter?: number };
  /** The stored message, once `status` is `sent`. */
  message?: Message;
}

export interface OutboxStore {
  all(): Promise<OutboxEntry[]>;
  put(entry: OutboxEntry): Promise<unknown>;
  delete(clientMessageId: string): Promise<unknown>;
}

export declare class MemoryStore implements OutboxStore {
  all(): Promise<OutboxEntry[]>;
  put(entry: OutboxEntry): Promise<void>;
  delete(clientMessageId: string): Promise<void>;
}

export declare class IndexedDbStore implements OutboxStore {
  constructor(name?: string);
  all(): Promise<OutboxEntry[]>;
  put(entry: OutboxEntry): Promise<unknown>;
  delete(clientMessageId: string): Promise<unknown>;
}

export declare class Backoff {
  constructor(options?: { base?: number; cap?: number; random?: () => number });
  attempt: number;
  next(): number;
  reset(): void;
}

export declare class SeqTracker {
  get(conversationId: string): number;
  classify(message: Pick<Message, 'conversationId' | 'seq'>): 'apply' | 'duplicate' | 'gap';
  settle(conversationId: string, seq: number): void;
}

export declare class ParleyError extends Error {
  status: number;
  code: string;
  retryAfter?: number;
  readonly transient: boolean;
}

export interface ParleyEnv {
  fetch?: typeof fetch;
  WebSocket?: typeof WebSocket;
  EventSource?: typeof EventSource;
  setTimeout?: (fn: () => void, ms: number) => unknown;
  clearTimeout?: (handle: unknown) => void;
  random?: () => number;
  document?: Document;
  /** `online`/`offline` events and `navigator.onLine`. */
  window?: Window;
  store?: OutboxStore;
}

export interface ParleyEventMap {
  message: CustomEvent<Message>;
  outbox: CustomEvent<OutboxEntry>;
  status: CustomEvent<{ status: 'idle' | 'connecting' | 'open' | 'reconnecting' | 'offline' | 'refused' | 'closed'; transport: 'ws' | 'sse' | 'poll' }>;
  conversation: CustomEvent<Conversation>;
  removed: CustomEvent<{ conversationId: string }>;
  resynced: CustomEvent<{ cursor: string }>;
  error: CustomEvent<unknown>;
  'conversation.updated': CustomEvent<{ conversationId: string; lastReadSeq: number; unreadCount: number; totalUnread: number; removed?: boolean }>;
  'read.receipt': CustomEvent<{ conversationId: string; userId: string; seq: number; readAt: string | null }>;
  'typing.started': CustomEvent<{ conversationId: string; userId: string }>;
  'typing.stopped': CustomEvent<{ conversationId: string; userId: string }>;
  'presence.updated': CustomEvent<{ userId: string; status: 'online' | 'away' | 'offline'; lastSeenAt: string | null }>;
  [type: string]: CustomEvent<any>;
}

export declare class ParleyClient extends EventTarget {
  constructor(options: {
    baseUrl: string;
    /** A fresh bearer token; called again whenever the server refuses the current one. */
    getToken: () => Promise<string>;
    env?: ParleyEnv;
    transport?: 'auto' | 'ws' | 'sse' | 'poll';
  });
  readonly status: string;
  addEventListener<K extends keyof ParleyEventMap>(type: K, listener: (event: ParleyEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  request<T = unknown>(method: string, path: string, body?: unknown): Promise<T>;
  start(): Promise<void>;
  close(): void;
  resync(): Promise<void>;
  open(conversationId: string): Promise<{ items: Message[]; hasMore: boolean; nextCursor: string | null }>;
  send(conversationId: string, body: string, options?: { attachmentIds?: string[] }): Promise<OutboxEntry>;
  retry(clientMessageId: string): void;
  discard(clientMessageId: string): void;
  typing(conversationId: string): void;
  stopTyping(conversationId: string): void;
  markRead(conversationId: string, seq: number): void;
  subscribePresence(userIds: string[]): void;
}
