import { MultipleErrors, NetworkError, ProtocolError, ResponseError } from '@platformatic/kafka';
import { describe, expect, it } from 'vitest';
import { describedGroup } from '../../../src/kafka/platformatic/admin.js';
import { everyProtocolErrorIs } from '../../../src/kafka/platformatic/errors.js';

const response = (...ids: string[]) =>
  new ResponseError(20, 2, Object.fromEntries(ids.map((id, i) => [`/results/${i}`, [new ProtocolError(id).apiCode as number, null] as [number, null]])), {});

describe('@platformatic/kafka admin adapter', () => {
  it('tolerates a failure only when every answer in it is the expected one', () => {
    expect(everyProtocolErrorIs(new MultipleErrors('Deleting groups failed.', [response('GROUP_ID_NOT_FOUND', 'GROUP_ID_NOT_FOUND')]), 'GROUP_ID_NOT_FOUND')).toBe(true);
    expect(everyProtocolErrorIs(new MultipleErrors('Creating topics failed.', [response('TOPIC_ALREADY_EXISTS')]), 'TOPIC_ALREADY_EXISTS')).toBe(true);
    // One group not empty beside one not found: the deletion did not do what was asked.
    expect(everyProtocolErrorIs(response('GROUP_ID_NOT_FOUND', 'NON_EMPTY_GROUP'), 'GROUP_ID_NOT_FOUND')).toBe(false);
    // A coordinator that could not be reached beside one that answered "not found".
    expect(everyProtocolErrorIs(new MultipleErrors('Deleting groups failed.', [response('GROUP_ID_NOT_FOUND'), new NetworkError('Connection closed')]), 'GROUP_ID_NOT_FOUND')).toBe(false);
    expect(everyProtocolErrorIs(new MultipleErrors('x', []), 'GROUP_ID_NOT_FOUND')).toBe(false);
    expect(everyProtocolErrorIs(new Error('TOPIC_ALREADY_EXISTS'), 'TOPIC_ALREADY_EXISTS')).toBe(false);
  });

  it('describes a group member with its static id and its assignment per topic', () => {
    const members = new Map([
      ['m-1', { id: 'm-1', groupInstanceId: 'spans-0', clientId: 'c', clientHost: '/10.0.0.1', assignments: new Map([['spans', { topic: 'spans', partitions: [2, 0] }], ['rules', { topic: 'rules', partitions: [1] }]]) }],
      ['m-2', { id: 'm-2', groupInstanceId: null, clientId: 'c', clientHost: '/10.0.0.2' }],
    ]);
    expect(describedGroup({ id: 'g', state: 'Stable', members })).toEqual({
      group: 'g',
      state: 'Stable',
      members: [
        { memberId: 'm-1', clientId: 'c', clientHost: '/10.0.0.1', groupInstanceId: 'spans-0', assignment: { spans: [0, 2], rules: [1] } },
        { memberId: 'm-2', clientId: 'c', clientHost: '/10.0.0.2', groupInstanceId: null, assignment: {} },
      ],
    });
  });
});
